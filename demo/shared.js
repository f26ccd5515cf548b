'use strict'

// What every worker and client of the demo agree on: the node registry (`uses` key →
// implementation) and the blueprints, written exactly as for Flowcraft.

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

const agentNodeRegistry = {
	// ── order-diamond
	receiveOrder: async ({ context }) => {
		const order = await context.get('order')
		const subtotal = order.items.reduce((sum, item) => sum + item.price * item.quantity, 0)
		return { output: { items: order.items.length, subtotal } }
	},
	computeTax: async ({ input, params }) => {
		await sleep(20) // pretend to call a tax service
		return { output: Math.round(input.subtotal * params.rate * 100) / 100 }
	},
	computeShipping: async ({ input }) => ({ output: input.items > 2 ? 0 : 4.9 }),
	sumTotal: async ({ input, context }) => {
		const total = Math.round((input.receipt.subtotal + input.tax + input.shipping) * 100) / 100
		await context.set('invoiceTotal', total)
		return { output: total }
	},

	// ── expense-approval
	checkExpense: async ({ context }) => {
		const expense = await context.get('expense')
		return { output: expense, action: expense.amount <= 100 ? 'auto-approve' : 'escalate' }
	},
	approveExpense: async ({ input }) => ({ output: `approved ${input.amount} ${input.currency} for ${input.employee}` }),
	escalateExpense: async ({ input }) => ({
		output: `sent ${input.amount} ${input.currency} from ${input.employee} to a manager`,
	}),
}

const blueprints = {
	// A diamond: receive fans out to tax and shipping, which join ('all') at total.
	'order-diamond': {
		id: 'order-diamond',
		metadata: { version: '1' },
		nodes: [
			{ id: 'receive', uses: 'receiveOrder' },
			{ id: 'tax', uses: 'computeTax', params: { rate: 0.2 } },
			{ id: 'shipping', uses: 'computeShipping' },
			{
				id: 'total',
				uses: 'sumTotal',
				// The join's input: each field from a node's output (`_outputs.<node>`).
				inputs: { receipt: 'receive', tax: 'tax', shipping: 'shipping' },
				config: { joinStrategy: 'all' },
			},
		],
		edges: [
			{ source: 'receive', target: 'tax' },
			{ source: 'receive', target: 'shipping' },
			{ source: 'tax', target: 'total' },
			{ source: 'shipping', target: 'total' },
		],
	},
	// Action routing: check returns 'auto-approve' or 'escalate'; only that edge is taken.
	'expense-approval': {
		id: 'expense-approval',
		metadata: { version: '1' },
		nodes: [
			{ id: 'check', uses: 'checkExpense' },
			{ id: 'approve', uses: 'approveExpense' },
			{ id: 'escalate', uses: 'escalateExpense' },
		],
		edges: [
			{ source: 'check', target: 'approve', action: 'auto-approve' },
			{ source: 'check', target: 'escalate', action: 'escalate' },
		],
	},
}

/** Where the demo's services, queue and tables are: environment variables, else the local defaults. */
function demoSettings(env = process.env) {
	return {
		rabbitmqUrl: env.RABBITMQ_URL || 'amqp://guest:guest@127.0.0.1:5672',
		postgresUrl: env.POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/test',
		redisUrl: env.REDIS_URL || 'redis://127.0.0.1:6379',
		queueName: env.FLOWCRAFT_QUEUE || 'flowcraft-jobs',
		contextTableName: env.FLOWCRAFT_CONTEXT_TABLE || 'flowcraft_contexts',
		statusTableName: env.FLOWCRAFT_STATUS_TABLE || 'flowcraft_statuses',
	}
}

module.exports = { agentNodeRegistry, blueprints, demoSettings }
