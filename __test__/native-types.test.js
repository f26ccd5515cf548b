'use strict'

// native.d.ts, written by `npm run build` from src/*.rs and committed, is the
// binding's documentation (docs/architecture.md). It must describe the addon that
// is loaded: every class, method and function the addon exports is declared there
// and nothing else is, and it type-checks on its own (so every type it names is declared).

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const { loadNative } = require('../lib/load-native')

const ROOT = path.resolve(__dirname, '..')
const DTS = fs.readFileSync(path.join(ROOT, 'native.d.ts'), 'utf8')

/** `{ name: [method, ...] }` of the classes native.d.ts declares. */
function declaredClasses() {
	const out = {}
	for (const m of DTS.matchAll(/^export declare class (\w+) \{\n([\s\S]*?)^\}/gm)) {
		out[m[1]] = [...m[2].matchAll(/^ {2}(\w+)\(/gm)].map((x) => x[1]).filter((n) => n !== 'constructor')
	}
	return out
}

test('native.d.ts declares exactly the classes, methods and functions the addon exports', () => {
	const native = loadNative()
	const classes = declaredClasses()
	const functions = [...DTS.matchAll(/^export declare function (\w+)\(/gm)].map((m) => m[1])
	const exported = Object.keys(native).sort()
	expect([...Object.keys(classes), ...functions].sort()).toEqual(exported)
	for (const [name, methods] of Object.entries(classes)) {
		const proto = native[name].prototype
		const actual = Object.getOwnPropertyNames(proto).filter(
			(k) => k !== 'constructor' && typeof proto[k] === 'function',
		)
		expect({ [name]: methods.sort() }).toEqual({ [name]: actual.sort() })
	}
	for (const fn of functions) expect(typeof native[fn]).toBe('function')
})

test('each callback, the config and each result is declared with its doc comment', () => {
	for (const t of [
		'RunNodeFn',
		'EvaluateFn',
		'NotifyFn',
		'CoordinateFn',
		'WeakCoordinateFn',
		'NativeConfig',
		'StartedRun',
		'FinishedRun',
		'RunReport',
		'NodeState',
		'RunSummary',
		'WorkerCounters',
		'DeadLetter',
	]) {
		expect(DTS).toMatch(new RegExp(`\\*/\\nexport (?:interface|type) ${t}\\b`))
	}
})

test('native.d.ts type-checks on its own', () => {
	// declaration files are checked too (no skipLibCheck), and no @types are pulled in
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'native-dts-'))
	try {
		fs.copyFileSync(path.join(ROOT, 'native.d.ts'), path.join(dir, 'native.d.ts'))
		const compilerOptions = { strict: true, noEmit: true, skipLibCheck: false, types: [] }
		fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions, files: ['native.d.ts'] }))
		const tsc = require.resolve('typescript/bin/tsc', { paths: [ROOT] })
		const r = spawnSync(process.execPath, [tsc, '--pretty', 'false', '-p', dir], { encoding: 'utf8' })
		expect(r.stdout + r.stderr).toBe('')
		expect(r.status).toBe(0)
	} finally {
		fs.rmSync(dir, { recursive: true, force: true })
	}
})
