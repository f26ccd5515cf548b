'use strict'

// One list of error codes: lib/errors.js' CODES. Every code the native core can
// raise (core/src/error.rs), the ErrorCode union and ErrorCodes constant of
// index.d.ts, and the Errors table of the API reference (docs/api.md, linked from the
// README) must name exactly those codes, so a code added in one place and forgotten
// in another fails here. Every other ERR_ code written in the sources (Rust string
// literals, JS, the CLI) and the docs must be one of CODES, of the CLI's own
// CLI_CODES, or one of Node's that we only match.

const fs = require('node:fs')
const path = require('node:path')
const { ErrorCodes } = require('..')
const { CODES, CLI_CODES } = require('../lib/errors')

const ROOT = path.resolve(__dirname, '..')
const read = (file) => fs.readFileSync(path.join(ROOT, file), 'utf8')
const codesIn = (text) => new Set(text.match(/ERR_[A-Z_]+/g))
const sorted = (set) => [...set].sort()

const list = new Set(Object.values(CODES))
const cliList = new Set(Object.values(CLI_CODES))
// Node's own codes, which the CLI only compares err.code with.
const NODE_CODES = new Set(['ERR_REQUIRE_ESM'])

/** Files under `dir` (relative to the package root) whose name ends with `ext`. */
function filesUnder(dir, ext) {
	const out = []
	const walk = (rel) => {
		for (const e of fs.readdirSync(path.join(ROOT, rel), { withFileTypes: true })) {
			const child = path.join(rel, e.name)
			if (e.isDirectory()) walk(child)
			else if (e.name.endsWith(ext)) out.push(child)
		}
	}
	walk(dir)
	return out
}

/** `[file, code]` for each ERR_ code in the files that is not in `allowed`. */
function strays(files, allowed, pattern = /ERR_[A-Z0-9_]+/g) {
	const out = []
	for (const f of files) {
		for (const m of read(f).matchAll(pattern)) {
			const code = m[1] ?? m[0]
			if (!allowed.has(code)) out.push(`${f}: ${code}`)
		}
	}
	return out
}

test('the exported ErrorCodes is the one list', () => {
	expect(ErrorCodes).toEqual(CODES)
	expect(Object.entries(CODES).every(([k, v]) => v === `ERR_${k}`)).toBe(true)
})

test('every code the native core raises is in the list', () => {
	const rust = read('core/src/error.rs')
	const mapping = rust.slice(rust.indexOf('pub fn code(&self)'), rust.indexOf('pub fn pg('))
	const native = codesIn(mapping)
	expect(native.size).toBeGreaterThan(5)
	expect(sorted(native).filter((c) => !list.has(c))).toEqual([])
})

test('index.d.ts declares exactly the list, in its union and in ErrorCodes', () => {
	const dts = read('index.d.ts')
	const union = dts.slice(
		dts.indexOf('export type ErrorCode ='),
		dts.indexOf('/**', dts.indexOf('export type ErrorCode =')),
	)
	expect(sorted(codesIn(union))).toEqual(sorted(list))
	const constant = dts.slice(
		dts.indexOf('export declare const ErrorCodes'),
		dts.indexOf('}', dts.indexOf('export declare const ErrorCodes')),
	)
	expect(sorted(codesIn(constant))).toEqual(sorted(list))
})

test("the API reference's Errors table (docs/api.md) names exactly the list, and the README links to it", () => {
	expect(read('README.md')).toContain('(docs/api.md#errors)')
	const readme = read('docs/api.md')
	const section = readme.slice(readme.indexOf('## Errors'), readme.indexOf('\n## ', readme.indexOf('## Errors') + 1))
	const rows = section.split('\n').filter((l) => l.startsWith('| `ERR_'))
	const inTable = new Set(rows.flatMap((r) => r.split('|')[1].match(/ERR_[A-Z_]+/g)))
	expect(sorted(inTable)).toEqual(sorted(list))
})

test('lib/errors.js has one list: no code of CLI_CODES is in CODES too', () => {
	expect(Object.entries(CLI_CODES).every(([k, v]) => v === `ERR_${k}`)).toBe(true)
	expect([...cliList].filter((c) => list.has(c))).toEqual([])
})

test('every ERR_ string literal of the Rust sources (core and binding) is in the list', () => {
	const rust = [...filesUnder('src', '.rs'), ...filesUnder('core/src', '.rs'), ...filesUnder('core/tests', '.rs')]
	expect(rust.length).toBeGreaterThan(10)
	const literal = /"\[?(ERR_[A-Z0-9_]+)/g
	expect(strays(rust, list, literal)).toEqual([])
	// the codes error.rs maps to are all there, and so is every code of the list the core raises
	const found = new Set(rust.flatMap((f) => [...read(f).matchAll(literal)].map((m) => m[1])))
	expect(found.has('ERR_TIMEOUT') && found.has('ERR_UNSUPPORTED')).toBe(true)
})

test('every ERR_ code written in the JS sources is in the list (the CLI: or in CLI_CODES)', () => {
	// lib/errors.js is where both lists are written
	const js = ['index.js', ...filesUnder('lib', '.js')].filter(
		(f) => !f.startsWith(path.join('lib', 'cli')) && f !== path.join('lib', 'errors.js'),
	)
	expect(strays(js, list)).toEqual([])
	const cli = [...filesUnder('bin', '.js'), ...filesUnder(path.join('lib', 'cli'), '.js')]
	expect(strays(cli, new Set([...list, ...cliList, ...NODE_CODES]))).toEqual([])
})

test('index.d.ts, the generated native.d.ts and the docs name no code outside the lists', () => {
	const dts = read('index.d.ts')
	const doc = dts.slice(
		dts.indexOf('/**', dts.indexOf('export type ErrorCode =')),
		dts.indexOf('export declare const ErrorCodes'),
	)
	// the ErrorCodes doc comment describes every code
	expect(sorted(codesIn(doc))).toEqual(sorted(list))
	expect(strays(['index.d.ts'], list)).toEqual([])
	expect(strays(['native.d.ts'], list)).toEqual([])
	const docs = ['README.md', ...filesUnder('docs', '.md')]
	expect(strays(docs, new Set([...list, ...cliList]))).toEqual([])
})
