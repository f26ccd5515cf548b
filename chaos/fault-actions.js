'use strict'
/**
 * The faults a Chaos harness deals its own workers (never other users of the services):
 * PostgreSQL backends terminated, Redis clients killed and AMQP connections closed, each
 * selected by the local ports of the workers' sockets; a run's status row held locked so
 * a commit is in flight; a RabbitMQ app restart, of the harness's private node only.
 * Methods of Chaos (chaos/harness.js mixes them in).
 */
const { localPorts, quoteIdent, rabbitmqctl, sleep } = require('./services')

/** The fault methods of Chaos. */
class ChaosFaults {
	/**
	 * Holds the context row of `runId` locked (SELECT ... FOR UPDATE in an open
	 * transaction), so that a worker's commit for that run waits. Returns { release }.
	 */
	async lockRun(runId) {
		const c = await this.pg.connect()
		await c.query('BEGIN')
		// every commit of a run locks its status row first
		await c.query(`SELECT 1 FROM ${quoteIdent(this.t.st)} WHERE run_id = $1 FOR UPDATE`, [runId])
		let released = false
		return {
			release: async () => {
				if (released) return
				released = true
				try {
					await c.query('COMMIT')
				} finally {
					c.release()
				}
			},
		}
	}

	/** The adapter's PostgreSQL backends of worker `pid` that wait for a lock (a blocked statement). */
	async blockedBackends(pid, timeoutMs = 5000) {
		const deadline = Date.now() + timeoutMs
		while (Date.now() < deadline) {
			const ports = localPorts(pid, 5432)
			if (ports.length) {
				const r = await this.pg.query(
					`SELECT pid, left(query, 60) AS query FROM pg_stat_activity
					 WHERE application_name = 'flowcraft-rabbitmq-adapter' AND wait_event_type = 'Lock' AND client_port = ANY($1::int[])`,
					[ports],
				)
				if (r.rows.length) return r.rows
			}
			await sleep(20)
		}
		return []
	}

	workerPorts(remotePort) {
		const ports = new Set()
		for (const w of this.liveWorkers()) for (const p of localPorts(w.pid, remotePort)) ports.add(p)
		return [...ports]
	}

	/** Terminates the PostgreSQL backends of this harness's workers (the adapter's own connections). */
	async terminatePgBackends() {
		const ports = this.workerPorts(5432)
		if (!ports.length) return 0
		const r = await this.pg.query(
			`SELECT pid, pg_terminate_backend(pid) AS ok FROM pg_stat_activity
			 WHERE application_name = 'flowcraft-rabbitmq-adapter' AND client_port = ANY($1::int[])`,
			[ports],
		)
		const n = r.rows.filter((x) => x.ok).length
		this.stats.pgTerminated += n
		return n
	}

	/** CLIENT KILL ID for every Redis client of this harness's workers (never our own). */
	async killRedisClients() {
		const ports = new Set(this.workerPorts(6379))
		if (!ports.size) return 0
		const list = await this.redis.client('LIST')
		let n = 0
		for (const line of String(list).split('\n')) {
			const id = /(?:^|\s)id=(\d+)/.exec(line)
			const addr = /(?:^|\s)addr=\S*:(\d+)(?:\s|$)/.exec(line)
			if (id && addr && ports.has(Number(addr[1]))) {
				n += Number(await this.redis.client('KILL', 'ID', id[1]))
			}
		}
		this.stats.redisKilled += n
		return n
	}

	/**
	 * Has RabbitMQ close the AMQP connections of this harness's workers
	 * (`rabbitmqctl close_connection`, selected by their local ports): the adapter's
	 * connection drops with jobs unacked and publishes unconfirmed. Not global.
	 */
	async closeAmqpConnections() {
		const ports = new Set(this.workerPorts(this.amqpPort))
		if (!ports.size) return 0
		const ctl = this.rabbit ? (args) => this.rabbit.ctl(args) : rabbitmqctl
		const out = await ctl(['list_connections', 'pid', 'peer_port', '--silent'])
		const pids = out
			.split('\n')
			.map((l) => l.trim().split(/\s+/))
			.filter((p) => p.length >= 2 && p[0].startsWith('<') && ports.has(Number(p[1])))
			.map((p) => p[0])
		await Promise.all(
			pids.map((pid) => ctl(['close_connection', pid, 'flowcraft chaos test: connection closed on purpose'])),
		)
		this.stats.amqpClosed += pids.length
		return pids.length
	}

	/**
	 * stop_app, wait `downMs`, start_app (always, in a finally) on this harness's private
	 * RabbitMQ node (`rabbitmqctl -n <node>` with its cookie): every connection to that
	 * node drops, nobody else's. Throws on a harness of the shared broker.
	 */
	async restartRabbit(downMs = 3000) {
		if (!this.rabbit) throw new Error('restartRabbit needs a private RabbitMQ node (the rabbit option of Chaos)')
		await this.closeAmqp()
		await this.rabbit.stopAppFor(downMs)
		this.stats.rabbitRestarts++
	}
}

module.exports = { ChaosFaults }
