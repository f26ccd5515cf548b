'use strict'
/**
 * Smoke test of the benchmark (bench/run.js): with a tiny N it runs every system (ours, the
 * RabbitMQ peer's two variants, the BullMQ peer's two variants) on every workflow against the
 * real services, prints the table, writes the report where BENCH_OUT
 * says (a temp file, never bench/results.md) and leaves no table or Redis key behind.
 * A benchmark is not a test: nothing here looks at a rate or a latency.
 */
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn } = require('node:child_process')
const { Client } = require('pg')
const IORedis = require('ioredis')

const POSTGRES_URL = process.env.POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/test'
const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379'

const WORKFLOWS = ['diamond', 'chain', 'fanout']
const SYSTEMS = ['ours', 'peer-documented', 'peer-tuned', 'bullmq-default', 'bullmq-tuned']
/** The width series (issue 10): our worker only. */
const WIDTHS = ['width20', 'width200', 'width2000']
/** The batch of the width series: one run whatever BENCH_RUNS says (10,004 node jobs). */
const BATCH = 'batch10000'

function runBench(env) {
	return new Promise((resolve, reject) => {
		const child = spawn(process.execPath, [path.join(__dirname, '..', 'bench', 'run.js')], {
			env: { ...process.env, ...env },
			stdio: ['ignore', 'pipe', 'pipe'],
		})
		let stdout = ''
		let stderr = ''
		child.stdout.on('data', (d) => (stdout += d))
		child.stderr.on('data', (d) => (stderr += d))
		child.on('error', reject)
		child.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr, pid: child.pid }))
	})
}

/** `| workflow | system | runs | …` rows of the main table (section "Throughput and latency"). */
function tableRows(markdown) {
	const rows = []
	const start = markdown.indexOf('## Throughput and latency')
	if (start < 0) return rows
	const end = markdown.indexOf('\n## ', start + 1)
	for (const line of markdown.slice(start, end < 0 ? undefined : end).split('\n')) {
		const m =
			/^\| (diamond|chain|fanout|width20|width200|width2000|batch10000) \| (ours|ours-x2|peer-documented|peer-tuned|bullmq-default|bullmq-tuned) \| (\d+)/.exec(
				line,
			)
		if (m) rows.push({ workflow: m[1], system: m[2], runs: Number(m[3]), line })
	}
	return rows
}

describe('npm run bench (tiny N)', () => {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowcraft-bench-'))
	const out = path.join(dir, 'results.tmp.md')
	let result

	beforeAll(async () => {
		result = await runBench({
			BENCH_RUNS: '3',
			BENCH_ROUNDS: '1',
			BENCH_IDLE_RUNS: '2',
			BENCH_CEILING_MS: '200',
			BENCH_OUT: out,
		})
		if (result.code !== 0) console.error(result.stderr)
	}, 300000)

	afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

	test('exits 0 and prints a row per workflow and system', () => {
		expect(result.code).toBe(0)
		const rows = tableRows(result.stdout)
		for (const wf of WORKFLOWS) {
			for (const sys of SYSTEMS) {
				const row = rows.find((r) => r.workflow === wf && r.system === sys)
				expect(row).toBeDefined()
				expect(row.runs).toBe(3)
				expect(row.line).not.toMatch(/failed\/lost/)
			}
		}
		expect(rows.find((r) => r.workflow === 'diamond' && r.system === 'ours-x2')).toBeDefined()
		for (const wf of WIDTHS) {
			const row = rows.find((r) => r.workflow === wf && r.system === 'ours')
			expect(row).toBeDefined()
			expect(row.runs).toBe(3)
			expect(row.line).not.toMatch(/failed\/lost/)
			expect(rows.filter((r) => r.workflow === wf)).toHaveLength(1)
		}
		const batch = rows.filter((r) => r.workflow === BATCH)
		expect(batch).toHaveLength(1)
		expect(batch[0].system).toBe('ours')
		expect(batch[0].runs).toBe(1)
		expect(batch[0].line).not.toMatch(/failed\/lost/)
	})

	test('writes the report to BENCH_OUT, with the machine, the ceilings and the idle latency', () => {
		const md = fs.readFileSync(out, 'utf8')
		expect(tableRows(md)).toHaveLength(WORKFLOWS.length * SYSTEMS.length + 1 + WIDTHS.length + 1)
		expect(md).toContain('## Width series')
		expect(md).toMatch(/Widest \/ narrowest cost per node job: \d+(\.\d)?×/)
		for (const heading of ['## Machine', '## Throughput and latency', '## Idle latency', '## Ceilings', '## Targets'])
			expect(md).toContain(heading)
		expect(md).toMatch(/- postgresql: \d+/)
		expect(md).toMatch(/- rabbitmq: RabbitMQ \d/)
		expect(md).toMatch(/- redis: \d/)
		expect(md).toMatch(/- redis durability: appendonly (yes|no), appendfsync \w+, save "[^"]*": /)
		expect(md).toContain('BENCH_RUNS=3')
		// the BullMQ peer: npm client named, targets of issue 16 against it
		expect(md).toMatch(/bullmq \d+\.\d+\.\d+/)
		expect(md).toContain('the BullMQ adapter at concurrency 64')
	})

	test('leaves no table and no Redis key behind', async () => {
		const pg = new Client({ connectionString: POSTGRES_URL })
		await pg.connect()
		const redis = new IORedis(REDIS_URL)
		try {
			const { rows } = await pg.query(
				`SELECT tablename FROM pg_tables WHERE tablename LIKE 't\\_bench\\_%\\_' || $1 || '\\_%'`,
				[String(result.pid)],
			)
			expect(rows).toEqual([])
			const fns = await pg.query(`SELECT proname FROM pg_proc WHERE proname LIKE 'bench\\_notify\\_' || $1 || '\\_%'`, [
				String(result.pid),
			])
			expect(fns.rows).toEqual([])
			const keys = []
			let cursor = '0'
			do {
				const [next, batch] = await redis.scan(cursor, 'MATCH', `*t_bench_*_${result.pid}_*`, 'COUNT', 1000)
				cursor = next
				keys.push(...batch)
			} while (cursor !== '0')
			expect(keys).toEqual([])
		} finally {
			await pg.end()
			await redis.quit()
		}
	})
})
