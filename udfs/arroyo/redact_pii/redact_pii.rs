/*
[dependencies]
chrono = "=0.4.39"
docstream-udfs = { path = "{{ DOCSTREAM_UDFS }}" }
*/
//! `redact_pii(text)` for Arroyo: docstream's redaction of e-mail addresses,
//! phone numbers, card and account numbers. NULL gives NULL.

use arroyo_udf_plugin::udf;

#[udf]
fn redact_pii(text: &str) -> String {
    docstream_udfs::redact_pii(text)
}
