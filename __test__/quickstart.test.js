'use strict'

// The README's quick start: its two commands are the first thing after the title, and
// each installs what it needs (scripts/ensure-deps.js: `npm ci` when node_modules is
// missing or does not match package-lock.json, nothing otherwise, so `npm test` after
// CI's own `npm ci` stays fast). The full fresh-clone run (npm ci + the release build)
// takes minutes and needs the registry; these checks cover its logic and wiring.

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
