//! Document events: the Kafka message contract in
//! `schemas/document_event.schema.json`, decoded and checked.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::contract::failure::ErrorKind;
use crate::contract::identity::doc_id;

/// What an event asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    #[default]
    Upsert,
    Delete,
}

/// An event as producers write it. Unknown fields are ignored.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct RawEvent {
    #[serde(default)]
    pub op: Op,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ObjectRef {
    pub uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// A valid event.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentEvent {
    pub doc_id: String,
    pub source_uri: String,
    pub tenant: Option<String>,
    pub event_time: Option<DateTime<Utc>>,
    pub title: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Delete,
    Inline { text: String, mime: Option<String> },
    Fetch(ObjectRef),
}

/// Why a message is not a valid event.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeError {
    pub kind: ErrorKind,
    pub message: String,
}

const MIMES: [(&str, &str); 3] = [
    ("text/plain", "txt"),
    ("text/markdown", "md"),
    ("text/html", "html"),
];

/// The mime type an inline event carries for a file named `name`, when
/// its format can travel inline.
pub fn inline_mime(name: &str) -> Option<&'static str> {
    let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
    MIMES.iter().find(|(_, e)| *e == ext).map(|(m, _)| *m)
}

impl DocumentEvent {
    /// The name extraction detects the format from: the source URI, or a
    /// name with the extension of the inline text's mime type.
    pub fn name_for_extraction(&self) -> String {
        match &self.action {
            Action::Inline {
                mime: Some(mime), ..
            } => {
                let ext = MIMES
                    .iter()
                    .find(|(m, _)| m == mime)
                    .map_or("txt", |(_, e)| e);
                format!("inline.{ext}")
            }
            _ => self.source_uri.clone(),
        }
    }
}

/// Decodes one message value. `max_bytes` bounds what is parsed at all.
pub fn decode(payload: &[u8], max_bytes: usize) -> Result<DocumentEvent, DecodeError> {
    if payload.len() > max_bytes {
        return Err(DecodeError {
            kind: ErrorKind::TooLarge,
            message: format!(
                "the event is {} bytes, over ingest.max_event_bytes ({max_bytes}); send large documents by reference (object.uri) instead of inline text",
                payload.len()
            ),
        });
    }
    let raw: RawEvent = serde_json::from_slice(payload).map_err(|e| {
        invalid(format!(
            "not a document event ({e}); see schemas/document_event.schema.json"
        ))
    })?;
    raw.validate()
}

fn invalid(message: String) -> DecodeError {
    DecodeError {
        kind: ErrorKind::MalformedEvent,
        message,
    }
}

impl RawEvent {
    pub fn validate(self) -> Result<DocumentEvent, DecodeError> {
        let non_empty = |name: &str, v: &Option<String>| match v {
            Some(s) if s.trim().is_empty() => Err(invalid(format!("{name} is empty"))),
            _ => Ok(()),
        };
        non_empty("doc_id", &self.doc_id)?;
        non_empty("source_uri", &self.source_uri)?;
        non_empty("tenant", &self.tenant)?;
        if self.doc_id.as_ref().is_some_and(|d| d.len() > 256) {
            return Err(invalid("doc_id is longer than 256 characters".into()));
        }
        let event_time = match &self.event_time {
            None => None,
            Some(t) => Some(
                DateTime::parse_from_rfc3339(t)
                    .map_err(|e| invalid(format!("event_time '{t}' is not RFC 3339 ({e})")))?
                    .with_timezone(&Utc),
            ),
        };
        if let Some(m) = &self.metadata {
            if !m.is_object() {
                return Err(invalid("metadata must be a JSON object".into()));
            }
        }
        if let Some(mime) = &self.mime {
            if !MIMES.iter().any(|(m, _)| m == mime) {
                return Err(invalid(format!(
                    "mime '{mime}' is not text/plain, text/markdown or text/html; send other formats by reference (object.uri)"
                )));
            }
        }
        let action = match (self.op, self.text, self.object) {
            (Op::Delete, None, None) => Action::Delete,
            (Op::Delete, _, _) => {
                return Err(invalid("a delete event carries no text or object".into()))
            }
            (Op::Upsert, Some(text), None) => Action::Inline {
                text,
                mime: self.mime,
            },
            (Op::Upsert, None, Some(object)) if object.uri.trim().is_empty() => {
                return Err(invalid("object.uri is empty".into()))
            }
            (Op::Upsert, None, Some(object)) => Action::Fetch(object),
            (Op::Upsert, Some(_), Some(_)) => {
                return Err(invalid(
                    "an upsert carries either text or object, not both".into(),
                ))
            }
            (Op::Upsert, None, None) => {
                return Err(invalid(
                    "an upsert needs its content: inline text or an object reference".into(),
                ))
            }
        };
        let source_uri = self.source_uri.or_else(|| match &action {
            Action::Fetch(o) => Some(o.uri.clone()),
            _ => None,
        });
        let (doc_id, source_uri) = match (self.doc_id, source_uri) {
            (Some(id), Some(uri)) => (id, uri),
            (None, Some(uri)) => (doc_id(&uri), uri),
            (Some(id), None) => (id.clone(), format!("doc:{id}")),
            (None, None) => {
                return Err(invalid(
                    "the event names no document: give doc_id or source_uri".into(),
                ))
            }
        };
        Ok(DocumentEvent {
            doc_id,
            source_uri,
            tenant: self.tenant,
            event_time,
            title: self.title,
            metadata: self.metadata,
            action,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(json: &str) -> DocumentEvent {
        decode(json.as_bytes(), 1 << 20).unwrap()
    }

    fn err(json: &str) -> DecodeError {
        decode(json.as_bytes(), 1 << 20).unwrap_err()
    }

    #[test]
    fn inline_and_reference_events() {
        let e = ok(r#"{"source_uri":"s3://inbox/a.md","text":"hi","future_field":1}"#);
        assert_eq!(e.doc_id, doc_id("s3://inbox/a.md"));
        assert_eq!(e.name_for_extraction(), "s3://inbox/a.md");
        assert!(matches!(e.action, Action::Inline { .. }));

        let e = ok(r#"{"object":{"uri":"s3://inbox/b.pdf","etag":"x","size":3},"tenant":"acme"}"#);
        assert_eq!(e.source_uri, "s3://inbox/b.pdf");
        assert_eq!(e.tenant.as_deref(), Some("acme"));

        let e = ok(
            r#"{"doc_id":"d1","text":"<p>x</p>","mime":"text/html","event_time":"2026-01-02T03:04:05+01:00"}"#,
        );
        assert_eq!(e.name_for_extraction(), "inline.html");
        assert_eq!(
            e.event_time.unwrap().to_rfc3339(),
            "2026-01-02T02:04:05+00:00"
        );

        let e = ok(r#"{"op":"delete","doc_id":"d1"}"#);
        assert_eq!(e.action, Action::Delete);
    }

    #[test]
    fn malformed_events_say_why() {
        assert_eq!(err("not json").kind, ErrorKind::MalformedEvent);
        assert!(err(r#"{"text":"x"}"#)
            .message
            .contains("doc_id or source_uri"));
        assert!(err(r#"{"doc_id":"d"}"#)
            .message
            .contains("inline text or an object"));
        assert!(
            err(r#"{"doc_id":"d","text":"x","object":{"uri":"s3://a/b"}}"#)
                .message
                .contains("not both")
        );
        assert!(err(r#"{"op":"delete","doc_id":"d","text":"x"}"#)
            .message
            .contains("no text"));
        assert!(err(r#"{"op":"rename","doc_id":"d"}"#)
            .message
            .contains("rename"));
        assert!(err(r#"{"doc_id":"d","text":"x","event_time":"yesterday"}"#)
            .message
            .contains("RFC 3339"));
        assert!(err(r#"{"doc_id":"d","text":"x","metadata":[1]}"#)
            .message
            .contains("object"));
        assert!(err(r#"{"doc_id":"d","text":"x","mime":"application/pdf"}"#)
            .message
            .contains("by reference"));
        assert!(err(r#"{"doc_id":"","text":"x"}"#).message.contains("empty"));
        let big = format!(r#"{{"doc_id":"d","text":"{}"}}"#, "x".repeat(100));
        assert_eq!(
            decode(big.as_bytes(), 50).unwrap_err().kind,
            ErrorKind::TooLarge
        );
    }
}
