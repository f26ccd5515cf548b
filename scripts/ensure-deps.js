#!/usr/bin/env node
'use strict'

// `npm test` and `npm run demo` run this first, so that both work on a fresh clone
// with nothing installed: when node_modules is missing or does not match
// package-lock.json, it runs `npm ci`; otherwise it does nothing and costs a few
// milliseconds (CI runs `npm ci` itself, then `npm test`, which then installs nothing).
//
// "Matches" means: every package of package-lock.json that is not optional (the
// other platforms' binaries) is installed at its locked version, as npm's own record
// of what it installed (node_modules/.package-lock.json) says.
// Uses nothing but Node itself. `--check` only reports (exit 1 when an install is needed).

const fs = require('node:fs')
const path = require('node:path')
const { spawnSync } = require('node:child_process')

const ROOT = path.resolve(__dirname, '..')

function readJson(file) {
	try {
		return JSON.parse(fs.readFileSync(file, 'utf8'))
	} catch {
		return undefined
	}
}

/** Why node_modules needs `npm ci`, or undefined when it is up to date. */
function staleReason(root = ROOT) {
	const lock = readJson(path.join(root, 'package-lock.json'))
	if (!lock?.packages) return 'package-lock.json is missing or unreadable'
	const installed = readJson(path.join(root, 'node_modules', '.package-lock.json'))
	if (!installed?.packages) return 'node_modules is missing'
	const stale = []
	for (const [name, entry] of Object.entries(lock.packages)) {
		if (name === '' || entry.optional || entry.link) continue
		const have = installed.packages[name]
		if (!have || have.version !== entry.version) stale.push(name.replace(/^.*node_modules\//, ''))
	}
	if (stale.length === 0) return undefined
	const list = stale.slice(0, 5).join(', ') + (stale.length > 5 ? `, and ${stale.length - 5} more` : '')
	return `node_modules does not match package-lock.json (${list})`
}

function main() {
	const reason = staleReason()
	if (!reason) return 0
	if (process.argv.includes('--check')) {
		console.log(`ensure-deps: ${reason}`)
		return 1
	}
	console.log(`ensure-deps: ${reason}: running npm ci`)
	const npm = process.env.npm_execpath
	// Under `npm run`, npm_execpath is npm's own CLI script: run it with this Node.
	const r = npm
		? spawnSync(process.execPath, [npm, 'ci', '--no-audit', '--no-fund'], { cwd: ROOT, stdio: 'inherit' })
		: spawnSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: ROOT, stdio: 'inherit' })
	if (r.error) {
		console.error(`ensure-deps: could not run npm ci: ${r.error.message}`)
		return 1
	}
	return r.status === null ? 1 : r.status
}

if (require.main === module) process.exit(main())

module.exports = { staleReason }
