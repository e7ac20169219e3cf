//! `ask`: answer a question from the lake's chunks only, with citations.
//!
//! Grounding is enforced in code, not left to the model:
//! - only chunks at least `min_similarity` close to the question (or, with
//!   no embeddings, matching its keywords) are shown to the model; with
//!   none, the answer is "not in the documents" and no model is called;
//! - the model returns claims, each with the excerpt numbers that state it
//!   (a JSON schema, grammar-constrained on local models), or none;
//! - citations of excerpts that were not shown are dropped, and so are
//!   claims left without one; with no claim left, the answer is again
//!   "not in the documents".

use anyhow::{anyhow, Result};
use docstream_models::chain::ModelChain;
use docstream_models::tasks::Task;
use docstream_udfs::redact_pii;
use serde::Serialize;
use serde_json::Value;

use super::query::Analytics;
use super::search::{search, Depth, Hit, Retrievers};
use crate::indexes::fresh::Scope;

pub const NOT_FOUND: &str = "The answer is not in the documents.";

#[derive(Debug, Clone)]
pub struct AskOptions {
    /// Chunks retrieved before the similarity cut and the context budget.
    pub k: usize,
    pub min_similarity: f32,
    pub filters: Scope,
}

#[derive(Debug, Clone, Serialize)]
pub struct Citation {
    pub doc_id: String,
    pub chunk_idx: i32,
    pub title: Option<String>,
    pub page_start: Option<i32>,
    pub page_end: Option<i32>,
}

impl Citation {
    pub fn tag(&self) -> String {
        format!("[{}#{}]", self.doc_id, self.chunk_idx)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Claim {
    pub text: String,
    pub citations: Vec<Citation>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub found: bool,
    pub claims: Vec<Claim>,
    /// The chunks shown to the model.
    pub context: Vec<Hit>,
    pub model: Option<String>,
}

impl Answer {
    /// The claims, each followed by its citations.
    pub fn text(&self) -> String {
        if !self.found {
            return NOT_FOUND.to_string();
        }
        self.claims
            .iter()
            .map(|c| {
                let tags: Vec<String> = c.citations.iter().map(Citation::tag).collect();
                format!("{} {}", c.text.trim(), tags.join(""))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

pub async fn ask(
    analytics: &Analytics,
    answerer: &ModelChain,
    question: &str,
    options: &AskOptions,
) -> Result<Answer> {
    let candidates = (options.k * 5).max(50);
    let depth = Depth {
        k: options.k,
        candidates,
        exact: false,
        retrievers: Retrievers::Hybrid,
    };
    let hits = search(analytics, question, depth, &options.filters).await?;
    let relevant: Vec<Hit> = hits
        .into_iter()
        .filter(|h| match h.cosine {
            Some(c) => c >= options.min_similarity,
            None => analytics.embedding_model().is_none() && h.bm25.is_some(),
        })
        .collect();
    let (context, prompt) = fit(answerer, question, relevant);
    if context.is_empty() {
        return Ok(Answer {
            found: false,
            claims: Vec::new(),
            context,
            model: None,
        });
    }
    let generated = answerer
        .generate(&Task::Answer, &[Some(&prompt)])
        .await
        .pop()
        .flatten()
        .ok_or_else(|| anyhow!("the model returned nothing"))?
        .map_err(|f| anyhow!("the model could not answer: {f}"))?;
    tracing::debug!(answer = %generated.value, "model answer");
    let claims = cited_claims(&generated.value, &context);
    Ok(Answer {
        found: !claims.is_empty(),
        claims,
        context,
        model: Some(generated.model),
    })
}

/// The excerpts that fit the model's input, best first, and the prompt
/// that numbers them.
fn fit(answerer: &ModelChain, question: &str, hits: Vec<Hit>) -> (Vec<Hit>, String) {
    let budget = answerer.input_budget();
    // The question before and after the excerpts: small models lose it otherwise.
    let tail = format!("\nQuestion: {question}\n");
    let mut prompt = format!("Question: {question}\n\nExcerpts:\n");
    let mut used = 2 * answerer.count_tokens(&tail) + 16;
    let mut kept = Vec::new();
    for hit in hits {
        // Like the model stages, the answer model never sees raw PII, in
        // the text or in a title taken from its first line.
        let title = redact_pii(hit.title.as_deref().unwrap_or("untitled"));
        let excerpt = format!(
            "[{}] ({title}) {}\n",
            kept.len() + 1,
            redact_pii(hit.text.trim())
        );
        let tokens = answerer.count_tokens(&excerpt);
        if used + tokens > budget {
            break;
        }
        used += tokens;
        prompt.push_str(&excerpt);
        kept.push(hit);
    }
    prompt.push_str(&tail);
    (kept, prompt)
}

/// The model's claims with their excerpt numbers turned into citations;
/// numbers outside the excerpts are dropped, and so are claims left
/// without any.
fn cited_claims(value: &Value, context: &[Hit]) -> Vec<Claim> {
    let claims = value["claims"].as_array().cloned().unwrap_or_default();
    claims
        .iter()
        .filter_map(|c| {
            let text = c["text"].as_str()?.trim();
            let mut citations: Vec<Citation> = Vec::new();
            for n in c["sources"].as_array()?.iter().filter_map(Value::as_u64) {
                let Some(hit) = (n as usize).checked_sub(1).and_then(|i| context.get(i)) else {
                    continue;
                };
                if !citations
                    .iter()
                    .any(|x| x.doc_id == hit.doc_id && x.chunk_idx == hit.chunk_idx)
                {
                    citations.push(Citation {
                        doc_id: hit.doc_id.clone(),
                        chunk_idx: hit.chunk_idx,
                        title: hit.title.clone(),
                        page_start: hit.page_start,
                        page_end: hit.page_end,
                    });
                }
            }
            (!text.is_empty() && !citations.is_empty()).then(|| Claim {
                text: text.to_string(),
                citations,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn citations_outside_the_excerpts_are_dropped() {
        let context = [Hit::new("a", 0), Hit::new("b", 3)];
        let value = json!({"claims": [
            {"text": "Grounded.", "sources": [2, 2, 9]},
            {"text": "Invented.", "sources": [7]},
            {"text": "Also grounded.", "sources": [1]},
        ]});
        let claims = cited_claims(&value, &context);
        assert_eq!(claims.len(), 2);
        assert_eq!(claims[0].citations.len(), 1);
        assert_eq!(claims[0].citations[0].tag(), "[b#3]");
        assert_eq!(claims[1].citations[0].tag(), "[a#0]");
        let answer = Answer {
            found: true,
            claims,
            context: Vec::new(),
            model: None,
        };
        assert_eq!(answer.text(), "Grounded. [b#3]\nAlso grounded. [a#0]");
    }
}
