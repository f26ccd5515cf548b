//! The core's one error type. Each variant maps to a stable code that the
//! binding layer hands to JavaScript as `error.code`.

use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("invalid table name {name:?}: use `name` or `schema.name` made of letters, digits and underscores (not starting with a digit)")]
    InvalidTableName { name: String },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("cannot connect to PostgreSQL at {target}: {}. Check that the server runs and the host, port, user and database are right", chain(source))]
    PgConnect { target: String, source: tokio_postgres::Error },
    #[error("PostgreSQL error while {doing}: {}", chain(source))]
    Pg { doing: String, source: tokio_postgres::Error },
    #[error("cannot connect to Redis at {target}: {source}. Check that the server runs and the host, port and password are right")]
    RedisConnect { target: String, source: redis::RedisError },
    #[error("Redis error while {doing}: {source}")]
    Redis { doing: String, source: redis::RedisError },
    #[error("cannot connect to RabbitMQ at {target}: {source}. Check the URL (amqp://user:pass@host:port/vhost) and that the broker runs")]
    AmqpConnect { target: String, source: lapin::Error },
    #[error("RabbitMQ error while {doing}: {}", chain(source))]
    Amqp { doing: String, source: lapin::Error },
    #[error("invalid blueprint {id:?}: {reason}")]
    InvalidBlueprint { id: String, reason: String },
    #[error("invalid JSON in {what}: {source}")]
    InvalidJson { what: String, source: serde_json::Error },
    #[error("TLS to {service} at {target} failed: {reason}. Check the CA you trust (ca, sslrootcert, cacertfile or NODE_EXTRA_CA_CERTS) and that the port serves TLS")]
    Tls { service: &'static str, target: String, reason: String },
    #[error("the queue {queue:?} does not exist on {broker}; nothing was created. Check the queue name (and the vhost), or start a worker, which declares it")]
    QueueNotFound { queue: String, broker: String },
    #[error("the queue {queue:?} exists with other settings than asked: {reason}. Use it as it is (leave queueType and queueArguments unset) or recreate it")]
    QueueMismatch { queue: String, reason: String },
    #[error("the table \"{table}\" does not exist, and with createTables: false nothing is created: print the statements that create it with `{command}` and apply them, or start one worker with createTables: true")]
    TableNotFound { table: String, command: String },
    #[error("missing column(s) {columns}, and with createTables: false no table is altered: print the statements that add them with `{command}` and apply them (they are idempotent), or start one worker with createTables: true")]
    ColumnNotFound { columns: String, command: String },
    #[error("missing index(es) on {indexes}, and with createTables: false no index is created: print the statements that create them with `{command}` and apply them (they are idempotent), or start one worker with createTables: true")]
    IndexNotFound { indexes: String, command: String },
    #[error("{0}")]
    Unsupported(String),
    /// The worker was asked what its state does not allow (start twice, start after stop).
    #[error("{0}")]
    WorkerState(String),
    /// A run is not in the state the call needs: resuming a run that is not
    /// awaiting, or one another caller resumed or changed first.
    #[error("{0}")]
    RunState(String),
    /// A statement that always returns one row returned none.
    #[error("{doing} returned no row")]
    NoRow { doing: &'static str },
    /// The LISTEN connection (waitForRun's wake-ups, cancellations) could not
    /// be opened the first time, or its task has stopped.
    #[error("{0}")]
    Listener(String),
    /// The user's own coordination store (an `ICoordinationStore` reached
    /// through the `coordinate` callback) threw or rejected: like Redis, its
    /// backend may be away for a moment. Worth retrying.
    #[error("the coordination store failed: {0}")]
    CoordinationStore(String),
    /// The user's coordination store answered what the interface does not
    /// allow (an increment that is not a number): retrying gets the same.
    #[error("{0}")]
    CoordinationAnswer(String),
    /// The broker refused (nacked) a publish: a quorum queue without a leader
    /// for a moment, a full queue. Worth retrying.
    #[error("RabbitMQ refused (nacked) {what}")]
    Nacked { what: &'static str },
    #[error("timed out: {0}")]
    Timeout(String),
}

impl CoreError {
    /// The stable code JavaScript sees as `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            CoreError::InvalidTableName { .. } => "ERR_INVALID_TABLE_NAME",
            CoreError::InvalidArgument(_) => "ERR_INVALID_ARGUMENT",
            CoreError::PgConnect { .. } => "ERR_PG_CONNECT",
            CoreError::Pg { .. } => "ERR_PG",
            CoreError::RedisConnect { .. } => "ERR_REDIS_CONNECT",
            CoreError::Redis { .. } => "ERR_REDIS",
            CoreError::AmqpConnect { .. } => "ERR_AMQP_CONNECT",
            CoreError::Amqp { .. } => "ERR_AMQP",
            CoreError::InvalidBlueprint { .. } => "ERR_INVALID_BLUEPRINT",
            CoreError::InvalidJson { .. } => "ERR_INVALID_JSON",
            CoreError::Tls { .. } => "ERR_TLS",
            CoreError::QueueNotFound { .. } => "ERR_QUEUE_NOT_FOUND",
            CoreError::QueueMismatch { .. } => "ERR_QUEUE_MISMATCH",
            CoreError::TableNotFound { .. } => "ERR_TABLE_NOT_FOUND",
            CoreError::ColumnNotFound { .. } => "ERR_COLUMN_NOT_FOUND",
            CoreError::IndexNotFound { .. } => "ERR_INDEX_NOT_FOUND",
            CoreError::Unsupported(_) => "ERR_UNSUPPORTED",
            // (one code for JavaScript, as before the variants were told apart)
            CoreError::WorkerState(_)
            | CoreError::RunState(_)
            | CoreError::NoRow { .. }
            | CoreError::Listener(_)
            | CoreError::CoordinationStore(_)
            | CoreError::CoordinationAnswer(_) => "ERR_WORKER_STATE",
            CoreError::Nacked { .. } => "ERR_AMQP",
            CoreError::Timeout(_) => "ERR_TIMEOUT",
        }
    }

    pub fn pg(doing: impl fmt::Display, source: tokio_postgres::Error) -> Self {
        CoreError::Pg { doing: doing.to_string(), source }
    }
    pub fn redis(doing: impl fmt::Display, source: redis::RedisError) -> Self {
        CoreError::Redis { doing: doing.to_string(), source }
    }
    pub fn amqp(doing: impl fmt::Display, source: lapin::Error) -> Self {
        CoreError::Amqp { doing: doing.to_string(), source }
    }
    pub fn json(what: impl fmt::Display, source: serde_json::Error) -> Self {
        CoreError::InvalidJson { what: what.to_string(), source }
    }

    /// Connection-level failures are worth retrying (the service may come back);
    /// everything else is a property of the input.
    pub fn is_transient(&self) -> bool {
        match self {
            // A refused login, a missing database, role or vhost: retrying cannot heal them.
            CoreError::PgConnect { source, .. } => source.as_db_error().is_none_or(|db| {
                let code = db.code().code();
                !(code.starts_with("28") || code == "3D000")
            }),
            CoreError::RedisConnect { source, .. } => source.kind() != redis::ErrorKind::AuthenticationFailed,
            CoreError::AmqpConnect { source, .. } => match source.kind() {
                // CONNECTION_FORCED (320): the broker is shutting down, it will be back.
                lapin::ErrorKind::ProtocolError(e) => e.get_id() == 320,
                _ => true,
            },
            CoreError::Pg { source, .. } => match source.as_db_error() {
                None => true,
                // Connection exceptions (08), operator intervention such as a
                // terminated backend or a restarting server (57), resource
                // shortages (53, 58) and serialization conflicts (40) pass.
                Some(db) => {
                    let code = db.code().code();
                    source.is_closed() || ["08", "57", "53", "58", "40"].iter().any(|class| code.starts_with(class))
                }
            },
            CoreError::Redis { source, .. } => {
                source.is_io_error()
                    || source.is_connection_dropped()
                    || source.is_connection_refusal()
                    || source.is_timeout()
            }
            CoreError::Amqp { .. } | CoreError::Nacked { .. } => true,
            CoreError::Timeout(_) => true,
            CoreError::CoordinationStore(_) => true,
            _ => false,
        }
    }
}

pub type CoreResult<T> = Result<T, CoreError>;

/// An error with its causes, `a: b: c`: tokio-postgres keeps the useful part
/// ("Connection refused", the server's message) in the source.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_went_wrong_keeps_its_code_and_message_and_says_whether_to_retry() {
        let cases = [
            (CoreError::WorkerState("the worker is already started".into()), "the worker is already started", false),
            (CoreError::RunState("run 'r' is not awaiting".into()), "run 'r' is not awaiting", false),
            (CoreError::NoRow { doing: "reading a run" }, "reading a run returned no row", false),
            (CoreError::Listener("listener stopped".into()), "listener stopped", false),
            (CoreError::CoordinationStore("ECONNRESET".into()), "the coordination store failed: ECONNRESET", true),
            (
                CoreError::CoordinationAnswer("the coordination store's increment returned \"x\", not a number".into()),
                "the coordination store's increment returned \"x\", not a number",
                false,
            ),
        ];
        for (e, message, transient) in cases {
            assert_eq!(e.code(), "ERR_WORKER_STATE", "{e:?}");
            assert_eq!(e.to_string(), message);
            assert_eq!(e.is_transient(), transient, "{e:?}");
        }
        assert!(CoreError::Nacked { what: "a job" }.is_transient());
        assert!(!CoreError::InvalidArgument("x".into()).is_transient());
    }
}
