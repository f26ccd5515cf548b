'use strict'

// Loads the CLI's --blueprints module: CommonJS, ES module or TypeScript.
//
// Node 20 cannot import a .ts file by itself. A TypeScript module (.ts, .mts, .cts,
// .tsx) is loaded through `tsx` when the user's project has it (resolved from the
// working directory, then from the module's own folder: this package does not depend
// on it); else with Node's own type stripping when this Node has it turned on
// (`process.features.typescript`, Node 22.18+ / 23.6+); else the load fails with
// ERR_BLUEPRINTS_TYPESCRIPT, which says to install tsx or to compile the module.

const fs = require('node:fs')
const path = require('node:path')
const { pathToFileURL } = require('node:url')
const { CLI_CODES } = require('../errors')

const TS_EXTENSION = /\.(ts|mts|cts|tsx)$/i

/** A problem with the command line or with what it names (exit status 2), with an optional code. */
class UsageError extends Error {
	constructor(message, code) {
		super(message)
		if (code) this.code = code
	}
}

/**
 * The file URL of tsx's ESM API (`tsx/esm/api`, which has `tsImport`) in the user's
 * project, or undefined when tsx is not installed there. Resolved through tsx's own
 * exports map: its CommonJS build of that API cannot register its loader on Node 20.
 */
function findTsx(file, cwd) {
	let pkgFile
	try {
		pkgFile = require.resolve('tsx/package.json', { paths: [cwd, path.dirname(file)] })
	} catch {
		return undefined
	}
	const pkg = JSON.parse(fs.readFileSync(pkgFile, 'utf8'))
	const entry = pkg.exports?.['./esm/api']?.import
	const rel = typeof entry === 'string' ? entry : entry?.default
	if (typeof rel !== 'string') {
		throw new UsageError(
			`--blueprints: the tsx in ${path.dirname(pkgFile)} (version ${pkg.version}) has no tsx/esm/api: install tsx 4 or later`,
			CLI_CODES.BLUEPRINTS_TYPESCRIPT,
		)
	}
	return pathToFileURL(path.join(path.dirname(pkgFile), rel)).href
}

async function loadTypeScript(file, cwd) {
	const tsxUrl = findTsx(file, cwd)
	if (tsxUrl) {
		const { tsImport } = await import(tsxUrl)
		return tsImport(pathToFileURL(file).href, pathToFileURL(__filename).href)
	}
	if (process.features?.typescript) return import(pathToFileURL(file).href)
	throw new UsageError(
		`--blueprints: ${file} is TypeScript, which Node.js ${process.version} cannot load by itself. ` +
			'Install tsx in your project (npm install --save-dev tsx), and the CLI loads the module through it; ' +
			'or compile the module to JavaScript (e.g. with tsc) and pass the .js file.',
		CLI_CODES.BLUEPRINTS_TYPESCRIPT,
	)
}

/**
 * The `blueprints` export (an object of blueprint id → blueprint, or a Map) of the
 * module at `modulePath`; undefined when no module is given.
 */
async function loadBlueprints(modulePath, { cwd = process.cwd() } = {}) {
	if (modulePath === undefined || modulePath === '') return undefined
	const file = path.resolve(cwd, modulePath)
	let mod
	try {
		if (TS_EXTENSION.test(file)) {
			fs.accessSync(file)
			mod = await loadTypeScript(file, cwd)
		} else {
			try {
				mod = require(file)
			} catch (e) {
				if (e?.code !== 'ERR_REQUIRE_ESM') throw e
				mod = await import(pathToFileURL(file).href)
			}
		}
	} catch (e) {
		if (e instanceof UsageError) throw e
		if ((e?.code === 'MODULE_NOT_FOUND' && String(e.message).includes(file)) || e?.code === 'ENOENT') {
			throw new UsageError(`--blueprints: cannot find the module ${file}`)
		}
		const err = new Error(`--blueprints: loading ${file} failed: ${e?.message}`, { cause: e })
		err.code = CLI_CODES.BLUEPRINTS_LOAD
		throw err
	}
	let bps = mod && (mod.blueprints ?? mod.default?.blueprints)
	if (bps instanceof Map) bps = Object.fromEntries(bps)
	if (!bps || typeof bps !== 'object') {
		throw new UsageError(`--blueprints: ${file} must export \`blueprints\` (an object of blueprint id → blueprint)`)
	}
	return bps
}

module.exports = { loadBlueprints, UsageError, TS_EXTENSION }
