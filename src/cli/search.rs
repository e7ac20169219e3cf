//! `docstream search` and `docstream ask`.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use docstream_models::chain::ModelChain;

use super::output::{Format, OutputArgs};
use super::resolved::Resolved;
use super::terminal::safe;
use crate::analytics::ask::{ask, AskOptions};
use crate::analytics::query::Analytics;
use crate::analytics::search::{page_label, search, to_batch, Depth, Hit, Retrievers};
use crate::indexes::fresh::{parse_time, Scope};

/// Where and what to search.
#[derive(Debug, clap::Args)]
pub struct ScopeArgs {
    /// Only documents of this tenant.
    #[arg(long)]
    pub tenant: Option<String>,

    /// Only documents dated on or after this (YYYY-MM-DD or RFC 3339);
    /// a document's date is its event_time, else when it was ingested.
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    pub since: Option<DateTime<Utc>>,

    /// Only documents dated before this (YYYY-MM-DD or RFC 3339).
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    pub until: Option<DateTime<Utc>>,
}

impl ScopeArgs {
    /// The lake with, when `embed`, the query embedder (keyword-only
    /// search still works without one) and, with `answer`, the answer model.
    async fn open(self, r: &Resolved, embed: bool, answer: bool) -> Result<Opened> {
        let models = r.models(embed, true, answer)?;
        let analytics =
            Analytics::open(&r.lake, &r.storage, models.embedder, &r.pipeline.analytics).await?;
        let filters = Scope {
            tenant: self.tenant,
            since: self.since,
            until: self.until,
        };
        Ok(Opened {
            min_similarity: r.pipeline.analytics.min_similarity,
            analytics,
            filters,
            answerer: models.answerer,
        })
    }
}

struct Opened {
    analytics: Analytics,
    filters: Scope,
    answerer: Option<std::sync::Arc<ModelChain>>,
    min_similarity: f32,
}

/// Find the chunks that best match a text: vector similarity and keywords
/// (BM25), fused by reciprocal rank.
///
/// Searches each document's current version. The query is embedded with
/// the pipeline's embedding provider, so it matches the stored vectors.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    docstream search \"budget overrun on the data migration\"\n  \
    docstream search \"vendor delay\" --k 5 --tenant acme --since 2026-01-01\n  \
    docstream search \"vendor delay\" --exact     # scan, without the indexes\n  \
    docstream search \"vendor delay\" --retrievers vector\n  \
    docstream search \"security incident\" --format json | jq '.[0].doc_id'")]
pub struct SearchArgs {
    /// What to look for, in plain words.
    pub query: String,

    /// How many chunks to return.
    #[arg(long, default_value_t = 10)]
    pub k: usize,

    /// Candidates each retriever contributes before fusion.
    #[arg(long, default_value_t = 100)]
    pub candidates: usize,

    /// Scan the tables instead of using the search indexes: slower, and
    /// the reference the indexes must agree with.
    #[arg(long)]
    pub exact: bool,

    /// Which ranked lists to fuse: hybrid (vectors and keywords), vector
    /// or keyword.
    #[arg(long, default_value = "hybrid", value_parser = ["hybrid", "vector", "keyword"])]
    pub retrievers: String,

    #[command(flatten)]
    pub scope: ScopeArgs,

    #[command(flatten)]
    pub output: OutputArgs,
}

impl SearchArgs {
    pub async fn run(self, r: Resolved) -> Result<()> {
        let retrievers = match self.retrievers.as_str() {
            "vector" => Retrievers::Vector,
            "keyword" => Retrievers::Keyword,
            _ => Retrievers::Hybrid,
        };
        // A keyword search never embeds, so the model is not loaded.
        let embed = retrievers != Retrievers::Keyword;
        let opened = self.scope.open(&r, embed, false).await?;
        let depth = Depth {
            k: self.k,
            candidates: self.candidates.max(self.k),
            exact: self.exact,
            retrievers,
        };
        let hits = search(&opened.analytics, &self.query, depth, &opened.filters).await?;
        if self.output.format == Format::Table && self.output.out.is_none() {
            print_hits(&hits);
            return Ok(());
        }
        self.output.emit(&[to_batch(&hits)?])
    }
}

fn print_hits(hits: &[Hit]) {
    if hits.is_empty() {
        println!("no matching chunks");
    }
    for h in hits {
        let why: Vec<String> = [
            h.cosine.map(|c| format!("cosine {c:.3}")),
            h.bm25.map(|b| format!("bm25 {b:.2}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        let pages = h.pages().map_or_else(String::new, |p| format!(" {p}"));
        println!(
            "{}. {}{pages} [{}#{}]  score {:.4} ({})  {}",
            h.rank,
            safe(h.title.as_deref().unwrap_or(&h.source_uri)),
            safe(&h.doc_id),
            h.chunk_idx,
            h.score,
            why.join(", "),
            safe(&h.tenant)
        );
        println!("   {}\n", safe(&h.snippet));
    }
}

/// Answer a question from the documents, citing [doc_id#chunk_idx] for
/// each claim.
///
/// Retrieves the chunks most similar to the question and has the
/// pipeline's answer model reply from them alone. When no chunk is
/// relevant, or the model finds no answer in them, it says the answer is
/// not in the documents instead of guessing.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    docstream ask \"Which projects have unmitigated security risks, and who owns them?\"\n  \
    docstream ask \"What did the vendor promise?\" --tenant acme --format json")]
pub struct AskArgs {
    /// The question.
    pub question: String,

    /// Chunks to retrieve (the most relevant that fit the model's context are used).
    #[arg(long, default_value_t = 8)]
    pub k: usize,

    /// Minimum cosine similarity for a chunk to count as relevant.
    /// Default: the pipeline's analytics.min_similarity.
    #[arg(long, value_name = "SCORE")]
    pub min_similarity: Option<f32>,

    #[command(flatten)]
    pub scope: ScopeArgs,

    /// text (default) or json.
    #[arg(long, short, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

impl AskArgs {
    pub async fn run(self, r: Resolved) -> Result<()> {
        let opened = self.scope.open(&r, true, true).await?;
        let answerer = opened
            .answerer
            .context("no answer model: set [analytics] answer_providers")?;
        let options = AskOptions {
            k: self.k,
            min_similarity: self.min_similarity.unwrap_or(opened.min_similarity),
            filters: opened.filters,
        };
        let answer = ask(&opened.analytics, &answerer, &self.question, &options).await?;
        match self.format {
            Format::Json | Format::Ndjson => {
                let json = serde_json::json!({
                    "question": self.question,
                    "answer": answer.text(),
                    "found": answer.found,
                    "claims": answer.claims,
                    "model": answer.model,
                    "context": answer.context,
                });
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json).context("cannot print the answer")?
                );
            }
            Format::Table | Format::Csv => {
                println!("{}", safe(&answer.text()));
                if answer.found {
                    println!("\nSources:");
                    let mut seen = Vec::new();
                    for c in answer.claims.iter().flat_map(|c| &c.citations) {
                        let tag = c.tag();
                        if !seen.contains(&tag) {
                            let title = c.title.as_deref().unwrap_or("");
                            let pages = page_label(c.page_start, c.page_end)
                                .map_or_else(String::new, |p| format!(", {p}"));
                            println!("  {tag} {}{pages}", safe(title));
                            seen.push(tag);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
