//! A value's JSON text, shared rather than copied. A node's output goes from its
//! response to its commit, and a big value read from PostgreSQL from the row read
//! to node code, as one text: not parsed into a `serde_json::Value` (about twice
//! its size) and serialised again, unless the core itself reads the value; a big
//! one stays in the row or the response that brought it (issue 12).

use bytes::BytesMut;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::Value;
use std::cell::RefCell;
use std::ops::Range;
use std::sync::Arc;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::Row;

/// Valid JSON text (checked where it was made); clones share it.
#[derive(Clone)]
pub struct JsonText(Text);

#[derive(Clone)]
enum Text {
    Own(Arc<str>),
    /// Bytes `range` of the text column `column` of a row read: the row is kept, not copied.
    Row {
        row: Arc<Row>,
        column: usize,
        range: Range<usize>,
    },
    /// Bytes `range` of a text that holds more than this value (a node's response).
    Part {
        whole: Arc<String>,
        range: Range<usize>,
    },
}

/// Where `part` lies in `whole`, when it is a slice of it.
fn range_in(whole: &str, part: &str) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize);
    (start <= whole.len() && part.len() <= whole.len() - start).then(|| start..start + part.len())
}

/// Where the `JsonText`s being deserialized may stay (`JsonText::reading`, `reading_text`).
enum Source {
    Row(Arc<Row>),
    Text(Arc<String>),
}

/// A part of a row's or a response's text over this many bytes stays where it is
/// (`JsonText::in_row`, `in_text`); a smaller one is copied (reading a row's text again
/// checks all of it).
const LENT_FROM_ROW_BYTES: usize = 1 << 20;

thread_local! {
    /// What a `JsonText` being deserialized may stay in.
    static SOURCE: RefCell<Option<Source>> = const { RefCell::new(None) };
}

impl JsonText {
    /// `value`'s text.
    pub fn of(value: &Value) -> JsonText {
        JsonText(Text::Own(value.to_string().into()))
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            Text::Own(text) => text,
            // (it was read from there as text when it was made)
            Text::Row { row, column, range } => {
                row.try_get::<_, &str>(*column).ok().and_then(|t| t.get(range.clone())).unwrap_or("null")
            }
            Text::Part { whole, range } => whole.get(range.clone()).unwrap_or("null"),
        }
    }

    /// `part`, a slice of `whole`: a big one stays in it; a smaller one is copied.
    pub fn in_text(whole: &Arc<String>, part: &str) -> JsonText {
        if let Some(range) = range_in(whole, part).filter(|_| part.len() > LENT_FROM_ROW_BYTES) {
            return JsonText(Text::Part { whole: whole.clone(), range });
        }
        JsonText(Text::Own(part.into()))
    }

    /// `part`, a slice of the text one of `row`'s columns gives (`row.get`): a big one
    /// stays in the row; any other text is copied.
    pub fn in_row(row: &Arc<Row>, part: &str) -> JsonText {
        if part.len() > LENT_FROM_ROW_BYTES {
            for column in 0..row.len() {
                let Ok(whole) = row.try_get::<_, &str>(column) else { continue };
                if let Some(range) = range_in(whole, part) {
                    return JsonText(Text::Row { row: row.clone(), column, range });
                }
            }
        }
        JsonText(Text::Own(part.into()))
    }

    /// Runs `read`, a deserialization of a text of `row`, so that the `JsonText`s it
    /// makes stay in the row (`in_row`) rather than copy it.
    pub fn reading<T>(row: &Arc<Row>, read: impl FnOnce() -> T) -> T {
        Self::reading_from(Source::Row(row.clone()), read)
    }

    /// Runs `read`, a deserialization of `whole`, so that the big `JsonText`s it makes
    /// stay in `whole` (`in_text`) rather than copy it.
    pub fn reading_text<T>(whole: &Arc<String>, read: impl FnOnce() -> T) -> T {
        Self::reading_from(Source::Text(whole.clone()), read)
    }

    fn reading_from<T>(source: Source, read: impl FnOnce() -> T) -> T {
        struct Reset;
        impl Drop for Reset {
            fn drop(&mut self) {
                SOURCE.with(|s| s.borrow_mut().take());
            }
        }
        SOURCE.with(|s| *s.borrow_mut() = Some(source));
        let _reset = Reset;
        read()
    }

    /// The value. The text was checked when it was made, so this only fails past
    /// serde_json's nesting limit, which reading it as raw text enforced too: `null` then.
    pub fn parse(&self) -> Value {
        serde_json::from_str(self.as_str()).unwrap_or(Value::Null)
    }
}

impl From<&RawValue> for JsonText {
    fn from(raw: &RawValue) -> JsonText {
        JsonText(Text::Own(raw.get().into()))
    }
}

impl PartialEq for JsonText {
    fn eq(&self, other: &JsonText) -> bool {
        self.as_str() == other.as_str()
    }
}

impl std::fmt::Debug for JsonText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOWN: usize = 200;
        let text = self.as_str();
        match text.char_indices().nth(SHOWN) {
            Some((end, _)) => write!(f, "JsonText({}… {} bytes)", &text[..end], text.len()),
            None => write!(f, "JsonText({text})"),
        }
    }
}

/// Read from the text being parsed, copied once (never through a `Value`), or not at
/// all when it is a big part of the row or text `JsonText::reading` or `reading_text`
/// names. Needs a deserializer
/// that can lend its input (`serde_json::from_str`).
impl<'de> Deserialize<'de> for JsonText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<JsonText, D::Error> {
        let raw = <&'de RawValue>::deserialize(d)?;
        Ok(SOURCE.with(|s| match &*s.borrow() {
            Some(Source::Row(row)) => JsonText::in_row(row, raw.get()),
            Some(Source::Text(whole)) => JsonText::in_text(whole, raw.get()),
            None => JsonText::from(raw),
        }))
    }
}

/// A field that is present is `Some`, even when it is `null` (an absent one is `undefined`).
pub fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<JsonText>, D::Error> {
    JsonText::deserialize(d).map(Some)
}

/// Bound as text (the statements cast it: `$3::text::jsonb`), without a copy of its own.
impl ToSql for JsonText {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.as_str().to_sql(ty, out)
    }

    fn accepts(ty: &Type) -> bool {
        <&str as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_text_is_read_as_written_and_shared_by_its_clones() {
        #[derive(Deserialize)]
        struct Result {
            #[serde(default, deserialize_with = "present")]
            output: Option<JsonText>,
        }
        let read = |text: &str| serde_json::from_str::<Result>(text).unwrap().output;
        // the node's own text, spacing and all; null is present, absence is undefined
        let text = read(r#"{"output": {"b": 1.50, "a" : [1,2]}}"#).unwrap();
        assert_eq!(text.as_str(), r#"{"b": 1.50, "a" : [1,2]}"#);
        assert_eq!(text.parse(), json!({"a": [1, 2], "b": 1.5}));
        assert_eq!(read(r#"{"output": null}"#).map(|t| t.parse()), Some(Value::Null));
        assert_eq!(read("{}"), None);
        assert!(serde_json::from_str::<Result>(r#"{"output": {"a": }"#).is_err());
        let shared = text.clone();
        assert!(std::ptr::eq(shared.as_str(), text.as_str()));
        assert_eq!(JsonText::of(&json!({"k": "v"})).as_str(), r#"{"k":"v"}"#);
    }

    #[test]
    fn a_big_part_of_a_text_being_read_stays_in_it_and_a_small_one_is_copied() {
        #[derive(Deserialize)]
        struct Pair {
            big: JsonText,
            small: JsonText,
        }
        let big = format!("\"{}\"", "x".repeat(LENT_FROM_ROW_BYTES + 1));
        let whole = Arc::new(format!(r#"{{"big": {big}, "small": [1, 2]}}"#));
        let pair: Pair = JsonText::reading_text(&whole, || serde_json::from_str(&whole)).unwrap();
        let within = |t: &JsonText| {
            let at = t.as_str().as_ptr() as usize;
            (whole.as_ptr() as usize..whole.as_ptr() as usize + whole.len()).contains(&at)
        };
        assert_eq!(pair.big.as_str(), big);
        assert!(within(&pair.big), "the big value is lent from the text read");
        assert_eq!(pair.small.as_str(), "[1, 2]");
        assert!(!within(&pair.small), "a small value is copied");
        // the text outlives what read it, for as long as a part of it does
        assert_eq!(Arc::strong_count(&whole), 2);
        drop(pair);
        assert_eq!(Arc::strong_count(&whole), 1);
        // a part that is not a slice of the text is copied
        let elsewhere = "y".repeat(LENT_FROM_ROW_BYTES + 1);
        let copied = JsonText::in_text(&whole, &elsewhere);
        assert_eq!(copied.as_str(), elsewhere);
        assert_eq!(Arc::strong_count(&whole), 1);
    }
}
