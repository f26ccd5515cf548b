'use strict'

// One list of error codes: lib/errors.js' CODES. Every code the native core can
// raise (core/src/error.rs), the ErrorCode union and ErrorCodes constant of
// index.d.ts, and the Errors table of the API reference (docs/api.md, linked from the
// README) must name exactly those codes, so a
// code added in one place and forgotten in another fails here.

const fs = require('node:fs')
const path = require('node:path')
const { ErrorCodes } = require('..')
const { CODES } = require('../lib/errors')

const ROOT = path.resolve(__dirname, '..')
const read = (file) => fs.readFileSync(path.join(ROOT, file), 'utf8')
const codesIn = (text) => new Set(text.match(/ERR_[A-Z_]+/g))
const sorted = (set) => [...set].sort()

const list = new Set(Object.values(CODES))

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
