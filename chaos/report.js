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

/**
 * A built-in phase's row (chaos/builtins-kill.js): lost counts runs not completed as
 * FlowRuntime's, outputs and loop iterations missing, batch items missing, dead letters;
 * duplicated counts loop iterations applied twice and batch items added twice. The
 * re-run columns need the fan-out workers' side tables: not measured (–).
 */
function builtinRow(r) {
	return [
		`built-ins: ${r.name} (${r.scenario ?? '?'})`,
		r.runs,
		r.completed,
		r.kills,
		r.restarts,
		0,
		0,
		0,
		0,
		r.lost.length,
		r.doubled.length,
		r.deadLetters,
		'–',
		'–',
		'–',
		'–',
		r.redeliveries,
		r.seconds.toFixed(1),
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

module.exports = { table, phaseRow, builtinRow, PHASE_HEADERS }
