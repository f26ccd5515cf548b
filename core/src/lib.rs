//! Protocol core of the Flowcraft RabbitMQ worker. Knows nothing of napi:
//! node code is reached through [`executor::NodeExecutor`].

pub mod amqp;
pub mod blueprint;
pub mod builtins;
pub mod commit_params;
pub mod compat;
pub mod context_store;
pub mod coordination;
pub mod error;
pub mod evaluator;
pub mod executor;
pub mod group_commit;
pub mod group_read;
pub mod job;
pub mod joins;
pub mod json_text;
pub mod locks;
pub mod notify;
pub mod pg;
pub mod queue;
pub mod routing;
pub mod run_store;
pub mod runs;
pub mod schema;
pub mod timings;
pub mod tls;
pub mod worker;
