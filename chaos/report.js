'use strict'
/** The tables of the chaos suite's report (chaos/run.js): markdown, one row a phase. */

function table(headers, rows) {
	const line = (cells) => `| ${cells.join(' | ')} |`
	return [
		line(headers),
		line(headers.map(() => '---')),
		...rows.map((r) => line(r.map((c) => String(c).replace(/\|/g, '\\|').replace(/\n/g, ' ')))),
	].join('\n')
}

function phaseRow(p) {
	const v = p.verify
	return [
		p.name,
		v.runs,
		v.completed,
		p.kills,
		p.workerRestarts,
		p.rabbitRestarts,
		p.amqpClosed,
		p.pgTerminated,
		p.redisKilled,
		v.lost.length,
		v.duplicated.length,
		p.deadLetters.length,
		v.reRunsCrash,
		v.reRunsConnection,
		v.joinExtraExecutions.crash,
		v.joinExtraExecutions.connection,
		v.redeliveredJobs,
		p.seconds.toFixed(1),
	]
}

const PHASE_HEADERS = [
	'phase',
	'runs',
	'completed',
	'kills (-9)',
	'worker restarts',
	'RabbitMQ restarts',
	'AMQP connections closed',
	'PG backends killed',
	'Redis clients killed',
	'lost',
	'duplicated',
	'dead-lettered',
	'user code re-ran after crash',
	'user code re-ran after lost connection',
	'join re-ran after crash',
	'join re-ran without crash',
	'redeliveries counted',
	'seconds',
]

module.exports = { table, phaseRow, PHASE_HEADERS }
