/*
[dependencies]
chrono = "=0.4.39"
docstream-models = { path = "{{ DOCSTREAM_MODELS }}" }
*/
//! `embed(text)` for Arroyo: the text's embedding as a JSON array of floats
//! (NULL for NULL),
//! from the OpenAI-compatible endpoint in `DOCSTREAM_EMBED_*`. Arroyo sends one
//! row per call; concurrent calls are coalesced into batched requests (by
//! count and tokens) with docstream's retries, backoff and 429 handling. A
//! row the model fails on gets NULL and the reason goes to the worker log.
//! Every call answers within its deadline (at most 90 min), below the 2 h
//! engine timeout, so a slow endpoint never restarts the pipeline.

use arroyo_udf_plugin::udf;

#[udf(unordered, allowed_in_flight = 1000, timeout = "2h")]
async fn embed(text: Option<&str>) -> Option<String> {
    docstream_models::standalone::embed(text?).await
}
