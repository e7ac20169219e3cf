//! Publishing document events: for objects in a folder or bucket, or from
//! an ndjson stream. Each event is keyed by its doc_id, so one document's
//! events stay ordered in one partition.

use std::io::BufRead;

use anyhow::{Context, Result};
use futures::StreamExt;
use rdkafka::producer::FutureProducer;

use crate::sources::bucket::{Bucket, SourceObject};
use crate::sources::event::{ObjectRef, RawEvent};
use crate::sources::kafka::send;
use crate::sources::kafka_config::KafkaConfig;

/// Events in flight to the broker at once.
const IN_FLIGHT: usize = 1000;

pub struct Publisher {
    producer: FutureProducer,
    topic: String,
}

impl Publisher {
    pub fn new(kafka: &KafkaConfig) -> Result<Self> {
        Ok(Self {
            producer: kafka.producer()?,
            topic: kafka.topic.clone(),
        })
    }

    /// Sends (key, payload) pairs; returns once the broker acknowledged all.
    pub async fn send_all(
        &self,
        events: impl IntoIterator<Item = (String, Vec<u8>)>,
    ) -> Result<usize> {
        let mut sent = 0;
        let mut acks =
            futures::stream::iter(events)
                .map(|(key, payload)| async move {
                    send(&self.producer, &self.topic, &key, &payload).await
                })
                .buffered(IN_FLIGHT);
        while let Some(ack) = acks.next().await {
            ack?;
            sent += 1;
        }
        Ok(sent)
    }
}

/// An upsert event that references an object, for workers to fetch.
pub fn object_event(object: &SourceObject, tenant: Option<&str>) -> RawEvent {
    RawEvent {
        tenant: tenant.map(str::to_string),
        event_time: Some(object.meta.last_modified.to_rfc3339()),
        object: Some(ObjectRef {
            uri: object.uri.clone(),
            etag: object.meta.e_tag.clone(),
            size: Some(object.meta.size),
        }),
        ..RawEvent::default()
    }
}

/// (key, payload) of a valid event; the key is its doc_id.
pub fn keyed(event: RawEvent) -> Result<(String, Vec<u8>)> {
    let payload = serde_json::to_vec(&event)?;
    let doc_id = event
        .validate()
        .map_err(|e| anyhow::anyhow!(e.message))?
        .doc_id;
    Ok((doc_id, payload))
}

/// Events for every object under `bucket`; with `inline`, text files are
/// sent as inline text (for workers that cannot read the location).
pub async fn objects(
    bucket: &Bucket,
    tenant: Option<&str>,
    inline: bool,
) -> Result<Vec<(String, Vec<u8>)>> {
    let mut events = Vec::new();
    for object in bucket.list().await? {
        let mut event = object_event(&object, tenant);
        if inline {
            let bytes = bucket.read(&object).await?;
            let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
                anyhow::anyhow!(
                    "{} is not UTF-8 text; publish it without --inline so workers fetch it",
                    object.uri
                )
            })?;
            event.object = None;
            event.source_uri = Some(object.uri.clone());
            event.text = Some(text);
        }
        events.push(keyed(event)?);
    }
    Ok(events)
}

/// Events from ndjson lines. Invalid lines are an error naming the line,
/// unless `verbatim`, which sends every non-empty line as it is (to test
/// consumers), keyed by its doc_id when it has one.
pub fn ndjson(input: impl BufRead, verbatim: bool) -> Result<Vec<(String, Vec<u8>)>> {
    let mut events = Vec::new();
    for (n, line) in input.split(b'\n').enumerate() {
        let line = line.context("cannot read the event stream")?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parsed = serde_json::from_slice::<RawEvent>(&line)
            .map_err(|e| anyhow::anyhow!(e.to_string()))
            .and_then(|raw| raw.validate().map_err(|e| anyhow::anyhow!(e.message)));
        match parsed {
            Ok(event) => events.push((event.doc_id, line)),
            Err(_) if verbatim => events.push((String::new(), line)),
            Err(e) => {
                anyhow::bail!(
                    "line {}: {e:#}. Fix the event (see schemas/document_event.schema.json) or pass --verbatim to send it anyway",
                    n + 1
                )
            }
        }
    }
    Ok(events)
}
