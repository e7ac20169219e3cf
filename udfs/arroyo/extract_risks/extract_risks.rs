/*
[dependencies]
chrono = "=0.4.39"
docstream-models = { path = "{{ DOCSTREAM_MODELS }}" }
*/
//! `extract_risks(text)` for Arroyo: the risks the document states as a JSON object valid against
//! `schemas/models/risks.schema.json`, from the chat endpoint in
//! `DOCSTREAM_CHAT_*`, with docstream's prompts, retries, one repair of
//! invalid output, and map-reduce over documents longer than the model's
//! context. A row the model fails on gets NULL; the reason goes to the
//! worker log.

use arroyo_udf_plugin::udf;
use docstream_models::tasks::Task;

#[udf(unordered, allowed_in_flight = 64, timeout = "2h")]
async fn extract_risks(text: Option<&str>) -> Option<String> {
    docstream_models::standalone::generate(Task::Risks, text?).await
}
