/*
[dependencies]
chrono = "=0.4.39"
docstream-udfs = { path = "{{ DOCSTREAM_UDFS }}" }
serde_json = "1"
*/
//! `chunk_text(text, max_tokens, overlap, encoding)` for Arroyo: docstream's
//! token chunker. Returns the chunks as a JSON array of
//! `{"idx", "text", "n_tokens", "char_start", "char_end", "page_start",
//! "page_end"}` (offsets in Unicode scalar values; pages null in text without
//! form feeds), the fields of docstream's `chunks` table. NULL text
//! gives NULL; a bad `max_tokens`, `overlap` or `encoding` fails the call, as
//! in docstream.

use arroyo_udf_plugin::udf;
use docstream_udfs::{ChunkParams, Encoding};

#[udf]
fn chunk_text(text: &str, max_tokens: i64, overlap: i64, encoding: &str) -> String {
    let params = encoding
        .parse::<Encoding>()
        .map_err(|e| e.to_string())
        .and_then(|e| ChunkParams::new(max_tokens, overlap, e).map_err(|e| e.to_string()))
        .unwrap_or_else(|e| panic!("chunk_text: {e}"));
    let chunks = docstream_udfs::chunk_text(text, &params);
    serde_json::to_string(&chunks).unwrap_or_else(|e| panic!("chunk_text: {e}"))
}
