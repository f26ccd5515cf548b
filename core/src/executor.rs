//! How the core reaches node code, a custom evaluator and the user's logger /
//! event bus. In production these are JavaScript callbacks (the binding layer);
//! in `cargo test`, Rust closures.

use crate::context_store::PatchOp;
use crate::json_text::{present, JsonText};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One node execution, as handed to the executor.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRequest {
    pub run_id: String,
    pub blueprint_id: String,
    pub node_id: String,
    pub uses: String,
    pub params: Value,
    pub config: Value,
    /// `None` is `undefined`. As JSON text: serialised once from the context where it was
    /// read (a big bound input: the text read), never cloned as a value on its way, and
    /// sent beside the request rather than inside it (issue 12).
    #[serde(skip)]
    pub input: Option<JsonText>,
    /// The input came from the node's object `inputs` mapping; fields that
    /// resolved to `undefined` are absent from `input` (JSON has no undefined),
    /// so the JS side rebuilds the object in the mapping's order.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub input_from_mapping: bool,
    /// The run's context as read for this job: the context row, with the
    /// keys of the node rows read (see `Blueprint::reads`), as each key and
    /// its value's JSON text (node code parses a value when it reads it).
    #[serde(skip)]
    pub context: Vec<(String, String)>,
    /// Other nodes' keys (`_outputs.<id>`, `<id>`, `_inputs.<id>`) are not in
    /// `context`: node code reads them on demand.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
    /// Context keys left out of `context` (large values): node code reads them on demand.
    #[serde(rename = "lazyKeys", skip_serializing_if = "Vec::is_empty")]
    pub lazy_keys: Vec<String>,
    /// The run's W3C trace context, when it was started in a trace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    pub attempt: u32,
}

impl NodeRequest {
    /// The input as a value (`None`: `undefined`).
    pub fn input_value(&self) -> Option<Value> {
        self.input.as_ref().map(JsonText::parse)
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct NodeResult {
    /// `None`: the node returned no output (`undefined`); `Some` of `null`: `null`. The text
    /// the node's response carried, kept to its commit (parsed only where the core reads it).
    #[serde(default, deserialize_with = "present")]
    pub output: Option<JsonText>,
    #[serde(default)]
    pub action: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct NodeError {
    pub message: String,
    /// The node was interrupted rather than failed, as the runner's error
    /// `code` says (read once, here; other codes are not the core's business).
    #[serde(default, rename = "code", deserialize_with = "cancellation")]
    pub cancelled: Option<Cancelled>,
    /// A `FlowcraftError` with `isFatal: true`: no retries, no fallback.
    #[serde(default)]
    pub fatal: bool,
}

/// Why node code was interrupted (`lib/node-runner.js` `cancelledError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// `ERR_NODE_CANCELLED`: the worker is stopping; the job goes back to the
    /// queue instead of failing the run.
    WorkerStopping,
    /// `ERR_RUN_CANCELLED`: its run was cancelled; nothing of it is committed.
    RunCancelled,
}

/// The error codes of the runner's response the core acts on.
#[derive(Deserialize)]
enum Code {
    #[serde(rename = "ERR_NODE_CANCELLED")]
    NodeCancelled,
    #[serde(rename = "ERR_RUN_CANCELLED")]
    RunCancelled,
    #[serde(other)]
    Other,
}

fn cancellation<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Cancelled>, D::Error> {
    Ok(match Option::<Code>::deserialize(d)? {
        Some(Code::NodeCancelled) => Some(Cancelled::WorkerStopping),
        Some(Code::RunCancelled) => Some(Cancelled::RunCancelled),
        Some(Code::Other) | None => None,
    })
}

#[derive(Debug, Deserialize)]
pub struct NodeResponse {
    pub ok: bool,
    #[serde(default)]
    pub result: Option<NodeResult>,
    #[serde(default)]
    pub writes: Vec<PatchOp>,
    #[serde(default)]
    pub error: Option<NodeError>,
}

impl NodeResponse {
    /// The response node code resolved with: a big output stays in its text.
    pub fn read(text: String) -> Result<NodeResponse, serde_json::Error> {
        let whole = Arc::new(text);
        JsonText::reading_text(&whole, || serde_json::from_str(&whole))
    }
    pub fn success(output: Option<Value>, action: Option<String>, writes: Vec<PatchOp>) -> NodeResponse {
        let output = output.as_ref().map(JsonText::of);
        NodeResponse { ok: true, result: Some(NodeResult { output, action }), writes, error: None }
    }
    pub fn failure(message: impl Into<String>) -> NodeResponse {
        NodeResponse {
            ok: false,
            result: None,
            writes: vec![],
            error: Some(NodeError { message: message.into(), cancelled: None, fatal: false }),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

pub trait NodeExecutor: Send + Sync + 'static {
    /// Runs the node (retries, timeout, middleware and class lifecycle are the
    /// executor's business). Never fails: a failure is `ok: false`.
    fn run(&self, request: NodeRequest) -> BoxFuture<'_, NodeResponse>;

    /// Whether the user supplied an evaluator; otherwise the built-in
    /// property-path evaluator is used and `evaluate` is never called.
    fn has_evaluator(&self) -> bool {
        false
    }

    /// Evaluates with the user's evaluator. `None` is `undefined`.
    fn evaluate(&self, _expression: &str, _data: Value) -> BoxFuture<'_, Option<Value>> {
        Box::pin(async { None })
    }

    fn log(&self, _level: Level, _message: &str, _meta: Value) {}

    fn event(&self, _kind: &str, _payload: Value) {}

    /// The run was cancelled while nodes of it run here: abort their signals.
    fn cancel(&self, _run_id: &str) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(response: &str) -> NodeError {
        serde_json::from_str::<NodeResponse>(response).unwrap().error.unwrap()
    }

    #[test]
    fn a_cancellation_is_read_once_from_the_runners_code() {
        let stopping = error_of(r#"{"ok":false,"error":{"message":"m","code":"ERR_NODE_CANCELLED"},"writes":[]}"#);
        assert_eq!(stopping.cancelled, Some(Cancelled::WorkerStopping));
        let run = error_of(r#"{"ok":false,"error":{"message":"m","code":"ERR_RUN_CANCELLED","fatal":true}}"#);
        assert_eq!((run.cancelled, run.fatal), (Some(Cancelled::RunCancelled), true));
        // any other code, a null one or none is a plain failure
        for error in
            [r#"{"message":"m","code":"ERR_NODE_TIMEOUT"}"#, r#"{"message":"m","code":null}"#, r#"{"message":"m"}"#]
        {
            let e = error_of(&format!(r#"{{"ok":false,"error":{error}}}"#));
            assert_eq!((e.cancelled, e.message.as_str()), (None, "m"), "{error}");
        }
        assert_eq!(NodeResponse::failure("x").error.unwrap().cancelled, None);
    }

    #[test]
    fn a_response_is_read_whole_with_its_big_output_as_written() {
        let output = format!("[\"{}\", 1]", "z".repeat(2 << 20));
        let text = format!(r#"{{"ok":true,"result":{{"output":{output},"action":"go"}},"writes":[]}}"#);
        let response = NodeResponse::read(text).unwrap();
        let result = response.result.unwrap();
        assert_eq!(result.output.unwrap().as_str(), output);
        assert_eq!(result.action.as_deref(), Some("go"));
        assert!(NodeResponse::read("{\"ok\":true,".into()).is_err());
    }
}
