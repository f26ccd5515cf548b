'use strict'

// Connection URLs as users write them: passwords that are not percent-encoded, and
// every PostgreSQL form node-pg's own parser (pg-connection-string) reads. The exact
// password the core sends is caught by small fake servers on loopback (PostgreSQL's
// and RabbitMQ's first handshake messages, Redis' AUTH); the real services check that
// the rest of such a URL (host, port, database) is read right.

const net = require('node:net')
const S = require('./helpers/services')
const { runsEnv, silent } = require('./helpers/runs-env')
const { PostgresContext, RedisCoordinationStore } = require('..')
const { toAmqpUrl, toPgTarget, toRedisTarget, redactUrl } = require('../lib/targets')

const res = S.useResources()
const setup = runsEnv(res)

// Written into the URLs as it is; a '%' not followed by two hex digits stays a '%', as every parser reads it.
const PASSWORD = 'p@ss#w/rd?x:y%z'

/** A loopback server that hands each connection to `onSocket`; resolves with its port. */
async function fakeServer(onSocket) {
	const sockets = new Set()
	const server = net.createServer((sock) => {
		sockets.add(sock)
		sock.on('error', () => {})
		sock.on('close', () => sockets.delete(sock))
		onSocket(sock)
	})
	await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
	res.onCleanup(
		() =>
			new Promise((resolve) => {
				for (const s of sockets) s.destroy()
				server.close(() => resolve())
			}),
	)
	return server.address().port
}

/** Resolves with the password of the first PostgreSQL client (cleartext password authentication). */
function fakePostgres() {
	let got
	const password = new Promise((resolve) => (got = resolve))
	const port = fakeServer((sock) => {
		let buf = Buffer.alloc(0)
		let started = false
		sock.on('data', (d) => {
			buf = Buffer.concat([buf, d])
			if (!started && buf.length >= 4 && buf.length >= buf.readInt32BE(0)) {
				buf = buf.subarray(buf.readInt32BE(0)) // StartupMessage
				started = true
				sock.write(Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 3])) // AuthenticationCleartextPassword
			}
			if (started && buf.length >= 5 && buf[0] === 0x70 && buf.length >= 1 + buf.readInt32BE(1)) {
				got(buf.subarray(5, 1 + buf.readInt32BE(1) - 1).toString('utf8')) // PasswordMessage, NUL-terminated
				sock.destroy()
			}
		})
	})
	return { port, password }
}

/** Resolves with the arguments of the first Redis command (AUTH, or HELLO … AUTH user pass). */
function fakeRedis() {
	let got
	const command = new Promise((resolve) => (got = resolve))
	const port = fakeServer((sock) => {
		let text = ''
		sock.on('data', (d) => {
			text += d.toString('latin1')
			const m = /^\*(\d+)\r\n/.exec(text)
			if (!m) return
			const args = []
			let rest = text.slice(m[0].length)
			for (let i = 0; i < Number(m[1]); i++) {
				const h = /^\$(\d+)\r\n/.exec(rest)
				if (!h || rest.length < h[0].length + Number(h[1]) + 2) return
				args.push(Buffer.from(rest.slice(h[0].length, h[0].length + Number(h[1])), 'latin1').toString('utf8'))
				rest = rest.slice(h[0].length + Number(h[1]) + 2)
			}
			got(args)
			sock.destroy()
		})
	})
	return { port, command }
}

/** Resolves with the user and password of the first AMQP client's connection.start-ok (PLAIN). */
function fakeRabbit() {
	let got
	const login = new Promise((resolve) => (got = resolve))
	const longstr = (s) => {
		const b = Buffer.alloc(4)
		b.writeUInt32BE(Buffer.byteLength(s))
		return Buffer.concat([b, Buffer.from(s)])
	}
	const port = fakeServer((sock) => {
		let buf = Buffer.alloc(0)
		let greeted = false
		sock.on('data', (d) => {
			buf = Buffer.concat([buf, d])
			if (!greeted && buf.length >= 8) {
				buf = buf.subarray(8) // "AMQP" 0 0 9 1
				greeted = true
				// connection.start: version 0-9, no server properties, PLAIN, en_US
				const args = Buffer.concat([Buffer.from([0, 10, 0, 10, 0, 9, 0, 0, 0, 0]), longstr('PLAIN'), longstr('en_US')])
				const head = Buffer.alloc(7)
				head.writeUInt8(1, 0)
				head.writeUInt32BE(args.length, 3)
				sock.write(Buffer.concat([head, args, Buffer.from([0xce])]))
			}
			if (greeted && buf.length >= 7 && buf.length >= 8 + buf.readUInt32BE(3)) {
				// connection.start-ok: class, method, client properties, mechanism, response
				let p = 7 + 4
				p += 4 + buf.readUInt32BE(p)
				p += 1 + buf[p]
				const response = buf.subarray(p + 4, p + 4 + buf.readUInt32BE(p)).toString('utf8')
				const [, user, password] = response.split('\0')
				got({ user, password })
				sock.destroy()
			}
		})
	})
	return { port, login }
}

describe('a password that is not percent-encoded', () => {
	test('PostgreSQL: the core sends it exactly, and such a URL reaches the real server', async () => {
		const fake = fakePostgres()
		const port = await fake.port
		const ctx = new PostgresContext('run-1', {
			client: `postgres://flowcraft:${PASSWORD}@127.0.0.1:${port}/db`,
			tableName: 'flowcraft_contexts',
		})
		const failed = S.captureError(() => ctx.get('k'))
		expect(await S.withTimeout(fake.password, 15000, 'the password at the fake server')).toBe(PASSWORD)
		const err = await failed
		expect(err.message).not.toContain(PASSWORD)
		expect(err.message).not.toContain('rd?x')

		// the trust-authenticated local server ignores the password: host, port and database are read right
		const u = new URL(S.POSTGRES_URL)
		const table = await res.contextTable('url_pw')
		const real = new PostgresContext('run-2', {
			client: `postgres://${u.username || 'postgres'}:${PASSWORD}@${u.host}${u.pathname}`,
			tableName: table,
		})
		await real.set('k', 'v')
		expect(await S.readContextRow(table, 'run-2')).toEqual({ k: 'v' })
	})

	test('Redis: the core sends it exactly', async () => {
		const fake = fakeRedis()
		const port = await fake.port
		const store = new RedisCoordinationStore(`redis://flowcraft:${PASSWORD}@127.0.0.1:${port}/2`)
		const failed = S.captureError(() => store.get('k'))
		const args = await S.withTimeout(fake.command, 15000, 'the first command at the fake server')
		expect(args.slice(-2)).toEqual(['flowcraft', PASSWORD])
		expect(['AUTH', 'HELLO']).toContain(args[0].toUpperCase())
		const err = await failed
		expect(err.message).not.toContain(PASSWORD)
		expect(err.message).not.toContain('rd?x')
	})

	test('RabbitMQ: the core sends it exactly; the real broker refuses the login, not the URL', async () => {
		const fake = fakeRabbit()
		const port = await fake.port
		const env = setup('url_pw')
		const opts = { startRetryMs: 0, exitOnStartFailure: false, logger: silent }
		const fakeStart = S.captureError(() =>
			env.adapter({ ...opts, amqpConnection: `amqp://flowcraft:${PASSWORD}@127.0.0.1:${port}/vh` }).start(),
		)
		const login = await S.withTimeout(fake.login, 15000, 'the login at the fake broker')
		expect(login).toEqual({ user: 'flowcraft', password: PASSWORD })
		expect((await fakeStart).message).not.toContain(PASSWORD)

		const real = new URL(S.RABBITMQ_URL)
		const refused = await S.captureError(() =>
			env.adapter({ ...opts, amqpConnection: `amqp://guest:${PASSWORD}@${real.host}` }).start(),
		)
		expect(refused.code).toBe('ERR_AMQP_CONNECT')
		expect(refused.message).not.toMatch(/invalid port|invalid RabbitMQ URL/i)
		expect(refused.message).not.toContain(PASSWORD)
		expect(refused.message).not.toContain('rd?x')
	})

	test('the URLs handed to the core are percent-encoded; ones the libraries read already are unchanged', () => {
		const fakeConnection = { connection: { stream: { remoteAddress: '10.0.0.5', remotePort: 5672, _host: 'mq' } } }
		expect(toAmqpUrl('amqp://user:p@ss#w/rd@host:5672/vh')).toBe('amqp://user:p%40ss%23w%2Frd@host:5672/vh')
		expect(toAmqpUrl(fakeConnection, { amqpUrl: 'amqp://me:p@ss#w/rd@mq:5672/v%2Fh?heartbeat=5', env: {} })).toBe(
			'amqp://me:p%40ss%23w%2Frd@mq:5672/v%2Fh?heartbeat=5',
		)
		expect(toRedisTarget('rediss://:p/ss?@host:6380/3').target.url).toBe('rediss://:p%2Fss%3F@host:6380/3')
		expect(toPgTarget('postgres://user:p@ss#w/rd@host:5433/db', {}).target).toEqual({
			host: 'host',
			port: 5433,
			user: 'user',
			password: 'p@ss#w/rd',
			database: 'db',
		})
		// what amqplib, ioredis and node-pg accept as it is
		for (const url of [
			'amqp://user:p@ss@host:5672/vh',
			'amqp://user:pa:ss@host',
			'amqp://guest:guest@host:5672/',
			'amqp://guest:guest@host/a@b',
			'amqp://host/a@b',
			'amqp://host/a/b',
		])
			expect(toAmqpUrl(url)).toBe(url)
		expect(toRedisTarget('redis://:p@ss@host:6379/2').target.url).toBe('redis://:p@ss@host:6379/2')
		expect(toPgTarget('postgres://user:p@ss@host/db', {}).target.password).toBe('p@ss')
	})

	test('a URL that reads two ways fails fast with ERR_INVALID_ARGUMENT, saying how to fix it, without the password', () => {
		// "u", port 1 and vhost "x@host", or user "u" with the password "1/x" on "host"
		const cases = [
			() => toAmqpUrl('amqp://u:1/x@host'),
			() => toPgTarget('postgres://u:1/x@host/db', {}),
			() => toRedisTarget('redis://u:1?x@host'),
		]
		for (const make of cases) {
			let err
			try {
				make()
			} catch (e) {
				err = e
			}
			expect(err).toBeInstanceOf(Error)
			expect(err.code).toBe('ERR_INVALID_ARGUMENT')
			expect(err.message).toMatch(/can be read two ways/)
			expect(err.message).toMatch(/percent-encode it \(encodeURIComponent\(password\)/)
			expect(err.message).not.toMatch(/1\/x|1\?x/)
		}
		expect(redactUrl('amqp://u:1/x@host')).toBe('amqp://u:***@host')
		expect(redactUrl('amqp://user:p@ss@host/vh')).toBe('amqp://user:***@host/vh')
	})
})

describe("PostgreSQL connection strings as node-pg's parser reads them", () => {
	test('forms our own parser refused: no host before the path (host as a parameter), a stray % in the password', async () => {
		const u = new URL(S.POSTGRES_URL)
		const user = u.username || 'postgres'
		const table = await res.contextTable('url_forms')
		const forms = [
			`postgres://${user}@${u.pathname}?host=${u.hostname}&port=${u.port || 5432}`,
			`postgres://${user}:50%off@${u.host}${u.pathname}`,
			`postgresql://${user}:pa ss@${u.host}${u.pathname}?application_name=flowcraft`,
		]
		for (const [i, client] of forms.entries()) {
			const ctx = new PostgresContext(`run-${i}`, { client, tableName: table })
			await ctx.set('form', i)
			expect(await S.readContextRow(table, `run-${i}`)).toEqual({ form: i })
		}
		expect(toPgTarget(`postgres://${user}:50%off@h/db`, {}).target.password).toBe('50%off')
	})

	test('what pg-connection-string returns is what the core gets: socket forms, parameters and TLS files', () => {
		expect(toPgTarget('/var/run/postgresql mydb', {}).target).toEqual({
			host: '/var/run/postgresql',
			port: 5432,
			database: 'mydb',
		})
		expect(toPgTarget('socket://me:pw@/var/run/pg?db=d', {}).target).toEqual({
			host: '/var/run/pg',
			port: 5432,
			user: 'me',
			password: 'pw',
			database: 'd',
		})
		expect(toPgTarget('postgres://h/db?user=u&port=6000&ssl=true', {}).target).toEqual({
			host: 'h',
			port: 6000,
			user: 'u',
			database: 'db',
			tls: {},
		})
		const missing = (() => {
			try {
				toPgTarget('postgres://h/db?sslmode=verify-full&sslrootcert=/no/such/ca.pem', {})
			} catch (e) {
				return e
			}
		})()
		expect(missing.code).toBe('ERR_INVALID_ARGUMENT')
		expect(missing.message).toMatch(/ENOENT.*\/no\/such\/ca\.pem/)
	})
})
