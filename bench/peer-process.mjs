/**
 * The process around a benchmark peer (bench/peer.mjs, bench/peer-bullmq.mjs): its
 * stderr log, the quiet logger it hands flowcraft, the SIGTERM stop, and the start as
 * a script (`WORKER_FAILED` and status 1 when main() throws).
 */

/** A log to stderr, each line headed `[<name> <pid>]`. */
export function peerLog(name) {
	return (...args) => process.stderr.write(`[${name} ${process.pid}] ${args.join(' ')}\n`)
}

/** info/debug silent (flowcraft logs several info lines per job); warnings and errors to stderr. */
export function quietLogger(log) {
	return {
		debug() {},
		info() {},
		warn: (m) => log('warn', m),
		error: (m) => log('error', m),
	}
}

/** On SIGTERM (once): `stop()`, then each of `closers` in turn, their failures ignored. */
export function stopOnSigterm(stop, closers) {
	let stopping = false
	process.on('SIGTERM', async () => {
		if (stopping) return
		stopping = true
		await stop()
		for (const close of closers) {
			try {
				await close()
			} catch {}
		}
	})
}

/** Runs `main` when the module at `moduleUrl` is the process's script (not when imported). */
export function runIfMain(moduleUrl, main, log) {
	const isMain = process.argv[1] && moduleUrl === new URL(`file://${process.argv[1]}`).href
	if (!isMain) return
	main().catch((e) => {
		log('FATAL', e?.stack ? e.stack : e)
		process.stdout.write('WORKER_FAILED\n')
		process.exit(1)
	})
}
