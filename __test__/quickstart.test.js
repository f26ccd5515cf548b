'use strict'

// The README's quick start: its two commands are the first thing after the title, and
// each installs what it needs (scripts/ensure-deps.js: `npm ci` when node_modules is
// missing or does not match package-lock.json, nothing otherwise, so `npm test` after
// CI's own `npm ci` stays fast). A fresh clone of this repository (its committed
// files only) is checked too: the cheap part of the first command (the dependencies
// install into a clone with no node_modules) by default; the whole demo, with its
// release build of minutes, with FLOWCRAFT_FULL_QUICKSTART=1.

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const { staleReason } = require('../scripts/ensure-deps')

const ROOT = path.resolve(__dirname, '..')
const tmpDirs = []
afterAll(() => {
	for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true })
})

function project({ lock, installed }) {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowcraft-ensure-deps-'))
	tmpDirs.push(dir)
	if (lock) fs.writeFileSync(path.join(dir, 'package-lock.json'), JSON.stringify(lock))
	if (installed) {
		fs.mkdirSync(path.join(dir, 'node_modules'))
		fs.writeFileSync(path.join(dir, 'node_modules', '.package-lock.json'), JSON.stringify(installed))
	}
	return dir
}

const LOCK = {
	lockfileVersion: 3,
	packages: {
		'': { name: 'app' },
		'node_modules/pg': { version: '8.23.1' },
		'node_modules/@types/pg': { version: '8.23.1', dev: true },
		'node_modules/@biomejs/cli-darwin-arm64': { version: '2.6.8', optional: true },
	},
}

test('the README opens with a quick start: npm run demo and npm test', () => {
	const md = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8')
	const sections = [...md.matchAll(/^## (.+)$/gm)].map((m) => m[1])
	expect(sections[0]).toBe('Quick start')
	const quick = md.slice(md.indexOf('## Quick start'), md.indexOf(`## ${sections[1]}`))
	const commands = /```bash\n([\s\S]*?)```/.exec(quick)[1]
	expect(
		commands
			.split('\n')
			.filter(Boolean)
			.map((l) => l.replace(/\s*#.*$/, '')),
	).toEqual(['npm run demo', 'npm test'])
})

test('npm test and npm run demo install what they need first; CI runs npm ci, then npm test', () => {
	const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'))
	expect(pkg.scripts.test).toMatch(/^node scripts\/ensure-deps\.js && npm run build && /)
	expect(pkg.scripts.demo).toMatch(/^node scripts\/ensure-deps\.js && npm run build && node demo\/run\.js$/)
	const ci = fs.readFileSync(path.join(ROOT, '.ci', 'run'), 'utf8')
	expect(ci.indexOf('npm ci')).toBeGreaterThan(0)
	expect(ci.indexOf('run npm test')).toBeGreaterThan(ci.indexOf('run npm ci'))
})

test('ensure-deps: missing or mismatched node_modules needs npm ci; optional packages of other platforms do not', () => {
	expect(staleReason(project({ lock: LOCK }))).toBe('node_modules is missing')
	expect(staleReason(project({}))).toMatch(/package-lock\.json is missing/)
	const old = { packages: { ...LOCK.packages, 'node_modules/pg': { version: '8.11.0' } } }
	expect(staleReason(project({ lock: LOCK, installed: old }))).toBe(
		'node_modules does not match package-lock.json (pg)',
	)
	const partial = { packages: { 'node_modules/pg': { version: '8.23.1' } } }
	expect(staleReason(project({ lock: LOCK, installed: partial }))).toMatch(/\(@types\/pg\)/)
	const same = {
		packages: { 'node_modules/pg': { version: '8.23.1' }, 'node_modules/@types/pg': { version: '8.23.1' } },
	}
	expect(staleReason(project({ lock: LOCK, installed: same }))).toBeUndefined()
})

test('ensure-deps on this checkout installs nothing and returns at once', () => {
	const t0 = Date.now()
	const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'ensure-deps.js'), '--check'], {
		cwd: ROOT,
		encoding: 'utf8',
	})
	expect({ status: r.status, stdout: r.stdout, stderr: r.stderr }).toEqual({ status: 0, stdout: '', stderr: '' })
	expect(Date.now() - t0).toBeLessThan(5000)
})

/** The commands of `npm run <script>` in `dir`, split at `&&`. */
function scriptSteps(dir, script) {
	const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'))
	return pkg.scripts[script].split('&&').map((s) => s.trim())
}

/** A clone of this repository in a scratch folder (removed after the tests). */
function freshClone() {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowcraft-clone-'))
	tmpDirs.push(dir)
	const r = spawnSync('git', ['clone', '--quiet', '--no-hardlinks', ROOT, dir], { encoding: 'utf8' })
	expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' })
	return dir
}

// npm reads these from the environment, so ensure-deps' own `npm ci` installs from the
// local cache without running install scripts (CI's machines have 2 cores and a time limit).
const OFFLINE_NPM = { npm_config_prefer_offline: 'true', npm_config_ignore_scripts: 'true', npm_config_audit: 'false' }

test('a fresh clone: the first quick-start command installs the dependencies it lacks', () => {
	const dir = freshClone()
	expect(fs.existsSync(path.join(dir, 'node_modules'))).toBe(false)
	expect(fs.existsSync(path.join(dir, 'README.md'))).toBe(true)
	const [ensure] = scriptSteps(dir, 'demo')
	expect(ensure).toBe('node scripts/ensure-deps.js')
	const t0 = Date.now()
	const r = spawnSync(process.execPath, ['scripts/ensure-deps.js'], {
		cwd: dir,
		encoding: 'utf8',
		env: { ...process.env, ...OFFLINE_NPM },
		timeout: 150000,
	})
	expect({ status: r.status, signal: r.signal }).toEqual({ status: 0, signal: null })
	expect(r.stdout).toMatch(/ensure-deps: node_modules is missing: running npm ci/)
	expect(Date.now() - t0).toBeLessThan(150000)
	// what the rest of the command needs is there: napi (the build) and the demo's clients
	expect(fs.existsSync(path.join(dir, 'node_modules', '.bin', 'napi'))).toBe(true)
	for (const name of ['amqplib', 'pg', 'ioredis', 'flowcraft', 'pg-connection-string']) {
		expect(fs.existsSync(path.join(dir, 'node_modules', name, 'package.json'))).toBe(true)
	}
	// and a second run installs nothing
	const again = spawnSync(process.execPath, ['scripts/ensure-deps.js', '--check'], { cwd: dir, encoding: 'utf8' })
	expect({ status: again.status, stdout: again.stdout }).toEqual({ status: 0, stdout: '' })
}, 180000)

const full = process.env.FLOWCRAFT_FULL_QUICKSTART === '1' ? test : test.skip

full(
	'a fresh clone: npm run demo, end to end (FLOWCRAFT_FULL_QUICKSTART=1; builds the addon, minutes)',
	() => {
		const dir = freshClone()
		const r = spawnSync('npm', ['run', 'demo'], {
			cwd: dir,
			encoding: 'utf8',
			env: { ...process.env, ...OFFLINE_NPM, npm_config_ignore_scripts: 'false' },
			timeout: 40 * 60000,
		})
		expect({
			status: r.status,
			signal: r.signal,
			tail: r.status === 0 ? '' : `${r.stdout}${r.stderr}`.slice(-4000),
		}).toEqual({ status: 0, signal: null, tail: '' })
		expect(r.stdout).toMatch(/ensure-deps: node_modules is missing: running npm ci/)
	},
	45 * 60000,
)
