'use strict'
/**
 * A TCP proxy to put between a worker and one service, to inject link faults that a
 * service restart cannot: a black hole (the sockets stay open, no byte flows: what a
 * dead NAT entry, a cut cable or a frozen VM looks like to the client), a reset (RST on
 * every connection), refusal of new connections, and a slow link.
 *
 *   const proxy = await FaultProxy.start({ port: 5432 })   // upstream 127.0.0.1:5432
 *   url = `postgres://postgres@127.0.0.1:${proxy.port}/test`
 *   proxy.blackhole()          // existing connections stop forwarding; new ones work
 *   proxy.blackhole({ newConnections: true })   // ... and new ones are held too
 *   proxy.heal()               // held connections flow again, new ones work
 *   proxy.reset()              // RST every connection
 *   proxy.refuse(true)         // new connections are reset at once (a stopped service)
 *   proxy.slow(500)            // every chunk waits 500 ms each way
 *   await proxy.close()
 *
 * A held connection is paused in both directions, so what was sent waits in the kernel
 * buffers: the client's TCP stack sees its data acknowledged (by the proxy's), which is
 * why only the client's own deadlines (query timeouts, heartbeats) can notice it.
 */
const net = require('node:net')

class FaultProxy {
	constructor({ host = '127.0.0.1', port }) {
		this.upstream = { host, port }
		this.conns = new Set()
		this.holdNew = false
		this.refusing = false
		this.delayMs = 0
		this.accepted = 0
		this.server = net.createServer((client) => this.accept(client))
	}

	/** A proxy listening on a free port of 127.0.0.1 to `host:port`. */
	static async start(upstream) {
		const p = new FaultProxy(upstream)
		await new Promise((resolve, reject) => {
			p.server.once('error', reject)
			p.server.listen(0, '127.0.0.1', resolve)
		})
		p.port = p.server.address().port
		return p
	}

	accept(client) {
		this.accepted++
		if (this.refusing) {
			client.resetAndDestroy()
			return
		}
		const upstream = net.connect(this.upstream)
		const conn = { client, upstream, held: false, queues: [[], []] }
		this.conns.add(conn)
		const end = () => {
			if (!this.conns.delete(conn)) return
			client.destroy()
			upstream.destroy()
		}
		for (const s of [client, upstream]) {
			s.setNoDelay(true)
			s.on('error', end)
			s.on('close', end)
		}
		this.pipe(conn, client, upstream, 0)
		this.pipe(conn, upstream, client, 1)
		if (this.holdNew) this.hold(conn)
	}

	/** Forwards `from` to `to`, in order, delayed by the current slowness. */
	pipe(conn, from, to, dir) {
		from.on('data', (chunk) => {
			if (this.delayMs <= 0 && conn.queues[dir].length === 0) {
				to.write(chunk)
				return
			}
			const q = conn.queues[dir]
			q.push(chunk)
			if (q.length === 1) this.drainLater(conn, to, dir)
		})
	}

	drainLater(conn, to, dir) {
		setTimeout(() => {
			const q = conn.queues[dir]
			const chunk = q.shift()
			if (chunk && !to.destroyed) to.write(chunk)
			if (q.length) this.drainLater(conn, to, dir)
		}, this.delayMs)
	}

	hold(conn) {
		conn.held = true
		conn.client.pause()
		conn.upstream.pause()
	}

	/** Connections open through the proxy now. */
	get connections() {
		return this.conns.size
	}

	/** Existing connections stop forwarding (sockets stay open); new ones too when asked. */
	blackhole({ newConnections = false } = {}) {
		for (const c of this.conns) this.hold(c)
		this.holdNew = newConnections
		return this.conns.size
	}

	/** Held connections flow again; new connections are forwarded. */
	heal() {
		this.holdNew = false
		this.refusing = false
		this.delayMs = 0
		for (const c of this.conns) {
			if (!c.held) continue
			c.held = false
			c.client.resume()
			c.upstream.resume()
		}
	}

	/** Resets every connection (both sides see a RST). Returns how many. */
	reset() {
		const n = this.conns.size
		for (const c of [...this.conns]) {
			this.conns.delete(c)
			c.client.resetAndDestroy()
			c.upstream.resetAndDestroy()
		}
		return n
	}

	/** While on, new connections are reset at once, as by a host with nothing listening. */
	refuse(on = true) {
		this.refusing = on
	}

	/** Every chunk waits `ms` in each direction (0: full speed). */
	slow(ms) {
		this.delayMs = ms
	}

	async close() {
		this.reset()
		await new Promise((resolve) => this.server.close(() => resolve()))
	}
}

module.exports = { FaultProxy }
