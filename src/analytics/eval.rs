//! `eval`: retrieval quality on a labelled query set. Each line of the
//! set is `{"query": "...", "relevant": [...]}`, where an entry is a
//! `doc_id`, a `doc_id#chunk_idx`, or a file name that a document's
//! source URI ends with (so a set works on any copy of the files).
//!
//! A chunk in the ranking is relevant when its chunk is listed, or when
//! its document is listed and no earlier chunk of that document counted:
//! reading a document's second chunk finds nothing new.

use std::collections::HashSet;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::query::{quote, Analytics};
use super::search::{search, Depth, Hit, Retrievers};
use crate::indexes::fresh::Scope;

/// Ranks past this count for MRR and nDCG.
pub const CUTOFF: usize = 10;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Labelled {
    pub query: String,
    pub relevant: Vec<String>,
}

/// Reads a JSON-lines query set.
pub fn read_set(text: &str) -> Result<Vec<Labelled>> {
    let mut set = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let item: Labelled = serde_json::from_str(line).with_context(|| {
            format!("line {}: expected {{\"query\": \"...\", \"relevant\": [\"doc_id\", \"doc_id#chunk_idx\" or a file name, ...]}}", n + 1)
        })?;
        if item.relevant.is_empty() {
            bail!(
                "line {}: `relevant` lists nothing, so no result could count",
                n + 1
            );
        }
        set.push(item);
    }
    if set.is_empty() {
        bail!("the query set is empty");
    }
    Ok(set)
}

/// What counts as relevant for one query.
#[derive(Debug, Default)]
pub struct Judged {
    pub docs: HashSet<String>,
    pub chunks: HashSet<(String, i32)>,
}

impl Judged {
    fn total(&self) -> usize {
        self.docs.len() + self.chunks.len()
    }

    /// 1 or 0 for each hit, in rank order.
    pub fn gains(&self, ranked: &[(String, i32)]) -> Vec<u8> {
        let mut credited: HashSet<&str> = HashSet::new();
        ranked
            .iter()
            .map(|(doc, idx)| {
                let hit = self.chunks.contains(&(doc.clone(), *idx))
                    || (self.docs.contains(doc) && credited.insert(doc));
                u8::from(hit)
            })
            .collect()
    }
}

/// Metrics of one ranking.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Scores {
    pub recall: f64,
    pub mrr: f64,
    pub ndcg: f64,
}

/// recall@k (k = the ranking's length), MRR@10 and nDCG@10 with binary
/// gains, for a ranking and the number of relevant items.
pub fn score(gains: &[u8], relevant: usize) -> Scores {
    if relevant == 0 {
        return Scores::default();
    }
    let found: usize = gains.iter().map(|g| usize::from(*g)).sum();
    let mrr = gains
        .iter()
        .take(CUTOFF)
        .position(|g| *g == 1)
        .map_or(0.0, |p| 1.0 / (p + 1) as f64);
    let discount = |i: usize| 1.0 / ((i + 2) as f64).log2();
    let dcg: f64 = gains
        .iter()
        .take(CUTOFF)
        .enumerate()
        .map(|(i, g)| f64::from(*g) * discount(i))
        .sum();
    let ideal: f64 = (0..relevant.min(CUTOFF)).map(discount).sum();
    Scores {
        recall: found as f64 / relevant as f64,
        mrr,
        ndcg: dcg / ideal,
    }
}

/// One retriever's mean scores over the set.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub retrievers: Retrievers,
    pub indexed: bool,
    pub queries: usize,
    pub k: usize,
    #[serde(flatten)]
    pub mean: Scores,
}

/// Resolves the set's entries to doc ids and chunks.
async fn judge(analytics: &Analytics, item: &Labelled) -> Result<Judged> {
    let mut judged = Judged::default();
    for entry in &item.relevant {
        let (id, chunk) =
            match entry.split_once('#') {
                Some((id, idx)) => (
                    id,
                    Some(idx.parse::<i32>().with_context(|| {
                        format!("'{entry}': the part after # is a chunk number")
                    })?),
                ),
                None => (entry.as_str(), None),
            };
        let is_id = id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
        let ids = if is_id {
            vec![id.to_string()]
        } else {
            let sql = format!(
                "SELECT doc_id FROM current_documents WHERE source_uri LIKE {} OR source_uri = {}",
                quote(&format!("%/{id}")),
                quote(id)
            );
            let mut ids = Vec::new();
            for b in analytics.sql(&sql).await? {
                ids.extend(crate::indexes::fresh::strings(&b, 0)?);
            }
            if ids.is_empty() {
                bail!(
                    "query {:?}: no document's source ends with '{id}'",
                    item.query
                );
            }
            ids
        };
        for id in ids {
            match chunk {
                Some(c) => judged.chunks.insert((id, c)),
                None => judged.docs.insert(id),
            };
        }
    }
    Ok(judged)
}

/// Mean scores for each retriever, indexed and exact, at depth `k`.
pub async fn evaluate(analytics: &Analytics, set: &[Labelled], k: usize) -> Result<Vec<Row>> {
    let mut judged = Vec::new();
    for item in set {
        judged.push(judge(analytics, item).await?);
    }
    let mut rows = Vec::new();
    let vectors = analytics.embedding_model().is_some() && analytics.has_table("embeddings");
    for retrievers in [Retrievers::Keyword, Retrievers::Vector, Retrievers::Hybrid] {
        if retrievers == Retrievers::Vector && !vectors {
            tracing::warn!("no embeddings to compare with: vector rows left out");
            continue;
        }
        for indexed in [true, false] {
            let depth = Depth {
                k,
                candidates: k.max(100),
                exact: !indexed,
                retrievers,
            };
            let mut sum = Scores::default();
            for (item, j) in set.iter().zip(&judged) {
                let hits = search(analytics, &item.query, depth, &Scope::default()).await?;
                let s = score(&j.gains(&ranked(&hits)), j.total());
                sum.recall += s.recall;
                sum.mrr += s.mrr;
                sum.ndcg += s.ndcg;
            }
            let n = set.len() as f64;
            rows.push(Row {
                retrievers,
                indexed,
                queries: set.len(),
                k,
                mean: Scores {
                    recall: sum.recall / n,
                    mrr: sum.mrr / n,
                    ndcg: sum.ndcg / n,
                },
            });
        }
    }
    Ok(rows)
}

fn ranked(hits: &[Hit]) -> Vec<(String, i32)> {
    hits.iter()
        .map(|h| (h.doc_id.clone(), h.chunk_idx))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn metrics_match_a_hand_checked_case() {
        // Relevant: documents a and b, and chunk 2 of c (3 items).
        let judged = Judged {
            docs: ["a".to_string(), "b".to_string()].into(),
            chunks: [("c".to_string(), 2)].into(),
        };
        let ranking: Vec<(String, i32)> = [("x", 0), ("a", 0), ("a", 1), ("c", 1), ("c", 2)]
            .iter()
            .map(|(d, i)| (d.to_string(), *i))
            .collect();
        let gains = judged.gains(&ranking);
        // a's second chunk earns nothing; c#1 is not the listed chunk.
        assert_eq!(gains, [0, 1, 0, 0, 1]);
        let s = score(&gains, judged.total());
        close(s.recall, 2.0 / 3.0);
        close(s.mrr, 0.5);
        // DCG = 1/log2(3) + 1/log2(6); IDCG = 1 + 1/log2(3) + 1/2.
        let dcg = 1.0 / 3f64.log2() + 1.0 / 6f64.log2();
        let idcg = 1.0 + 1.0 / 3f64.log2() + 0.5;
        close(s.ndcg, dcg / idcg);

        let perfect = score(&[1, 1, 1], 3);
        assert_eq!(
            perfect,
            Scores {
                recall: 1.0,
                mrr: 1.0,
                ndcg: 1.0
            }
        );
        assert_eq!(score(&[0, 0], 2), Scores::default());
    }

    #[test]
    fn sets_are_checked_line_by_line() {
        let set = read_set("{\"query\": \"q\", \"relevant\": [\"a.txt\"]}\n\n").unwrap();
        assert_eq!(set.len(), 1);
        let err = read_set("{\"query\": \"q\"}").unwrap_err();
        assert!(format!("{err:#}").contains("line 1"), "{err:#}");
        assert!(read_set("{\"query\": \"q\", \"relevant\": []}").is_err());
        assert!(read_set("").is_err());
    }
}
