/*
[dependencies]
chrono = "=0.4.39"
docstream-udfs = { path = "{{ DOCSTREAM_UDFS }}" }
*/
//! `count_tokens(text, encoding)` for Arroyo: the text's tokens in
//! `cl100k_base` or `o200k_base`, as docstream counts `documents.n_tokens`.
//! NULL gives NULL; an unknown encoding fails the call, as in docstream.

use arroyo_udf_plugin::udf;
use docstream_udfs::Encoding;

#[udf]
fn count_tokens(text: &str, encoding: &str) -> i64 {
    let encoding: Encoding = encoding
        .parse()
        .unwrap_or_else(|e| panic!("count_tokens: {e}"));
    docstream_udfs::count_tokens(text, encoding) as i64
}
