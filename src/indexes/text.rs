//! The full-text index: Tantivy, BM25, one Tantivy document per chunk.
//!
//! Text goes through one analyzer (words, lowercased, English stop words
//! dropped, Snowball-stemmed), both when indexing and when parsing a query.
//! Tenant and date are indexed fields, so filters run inside the index.
//! `current` marks the rows of the version that was current when the index
//! was built; the other rows belong to versions whose `documents` row had
//! not landed yet, and are only used once the lake says they are current.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{
    Bm25StatisticsProvider, BooleanQuery, Occur, Query, QueryParser, TermSetQuery,
};
use tantivy::schema::{
    DateOptions, DateTimePrecision, Field, IndexRecordOption, Schema, TextFieldIndexing,
    TextOptions, Value, FAST, INDEXED, STORED, STRING,
};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
};
use tantivy::{
    DateTime as TDateTime, Index, IndexReader, IndexWriter, Searcher, TantivyDocument, Term,
};

use super::fresh::Scope;
use super::opened::Opened;
use super::ranking::{tied, Scored};
use super::text_filter::{Filtered, RowFilter};

const ANALYZER: &str = "docstream_en";

/// Rows tied with the k-th a search returns beyond the k; past this,
/// which of the tied rows come back follows their place in the index.
const MAX_TIED: usize = 1000;

/// Tantivy needs this much writer memory per indexing thread.
const MIN_THREAD_MEMORY: usize = 15 << 20;

#[derive(Clone, Copy)]
struct Fields {
    text: Field,
    doc_id: Field,
    chunk_idx: Field,
    content_hash: Field,
    tenant: Field,
    date: Field,
    current: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = b.add_text_field(
        "text",
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(ANALYZER)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        ),
    );
    let fields = Fields {
        text,
        // Fast fields for the filters `text_filter` checks row by row.
        doc_id: b.add_text_field("doc_id", STRING | STORED | FAST),
        chunk_idx: b.add_i64_field("chunk_idx", STORED),
        content_hash: b.add_text_field("content_hash", STORED),
        tenant: b.add_text_field("tenant", STRING | FAST),
        date: b.add_date_field(
            "date",
            DateOptions::from(INDEXED)
                .set_fast()
                .set_precision(DateTimePrecision::Microseconds),
        ),
        current: b.add_bool_field("current", INDEXED | FAST),
    };
    (b.build(), fields)
}

/// Tantivy keeps dates in i64 nanoseconds, which end in 2262: later dates
/// (a `--since 2999-01-01`) are clamped there instead of wrapping around
/// to 1677 and matching everything.
fn index_date(micros: i64) -> TDateTime {
    const LIMIT: i64 = i64::MAX / 1000;
    TDateTime::from_timestamp_micros(micros.clamp(-LIMIT, LIMIT))
}

fn register_analyzer(index: &Index) -> Result<()> {
    let stop = StopWordFilter::new(Language::English).context("no English stop words")?;
    let analyzer = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(stop)
        .filter(Stemmer::new(Language::English))
        .build();
    index.tokenizers().register(ANALYZER, analyzer);
    Ok(())
}

/// One chunk to index.
pub struct ChunkRow<'a> {
    pub doc_id: &'a str,
    pub chunk_idx: i32,
    pub content_hash: &'a str,
    pub text: &'a str,
    /// `None` for a version whose `documents` row had not landed.
    pub tenant: Option<&'a str>,
    /// The document's date: event time, else ingest time (microseconds).
    pub date: Option<i64>,
}

/// Writes a new index.
pub struct TextWriter {
    index: Index,
    writer: IndexWriter,
    fields: Fields,
    rows: u64,
}

impl TextWriter {
    /// A new index in `dir` (on disk), or in memory without one. Indexing
    /// holds at most `memory` bytes before it flushes a segment.
    pub fn create(dir: Option<&Path>, memory: usize) -> Result<Self> {
        let (schema, fields) = schema();
        let index = match dir {
            Some(d) => Index::create_in_dir(d, schema)
                .with_context(|| format!("cannot create an index in {}", d.display()))?,
            None => Index::create_in_ram(schema),
        };
        register_analyzer(&index)?;
        let threads = (memory / MIN_THREAD_MEMORY).clamp(1, 4);
        let memory = memory.max(MIN_THREAD_MEMORY * threads);
        let writer = index.writer_with_num_threads(threads, memory)?;
        Ok(Self {
            index,
            writer,
            fields,
            rows: 0,
        })
    }

    pub fn add(&mut self, row: &ChunkRow) -> Result<()> {
        let f = &self.fields;
        let mut doc = TantivyDocument::default();
        doc.add_text(f.text, row.text);
        doc.add_text(f.doc_id, row.doc_id);
        doc.add_i64(f.chunk_idx, row.chunk_idx.into());
        doc.add_text(f.content_hash, row.content_hash);
        doc.add_bool(f.current, row.tenant.is_some());
        if let Some(t) = row.tenant {
            doc.add_text(f.tenant, t);
        }
        if let Some(micros) = row.date {
            doc.add_date(f.date, index_date(micros));
        }
        self.writer.add_document(doc)?;
        self.rows += 1;
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Commits, merges nothing further and returns the index for searching.
    pub fn finish(mut self) -> Result<TextIndex> {
        self.writer.commit()?;
        self.writer.wait_merging_threads()?;
        TextIndex::from_index(self.index)
    }
}

/// One chunk found, with its BM25 score.
#[derive(Debug, Clone, PartialEq)]
pub struct TextHit {
    pub doc_id: String,
    pub chunk_idx: i32,
    pub content_hash: String,
    pub score: f32,
}

impl Scored for TextHit {
    fn key(&self) -> (f64, &String, i32) {
        (f64::from(self.score), &self.doc_id, self.chunk_idx)
    }
}

/// An index open for searching.
pub struct TextIndex {
    index: Index,
    reader: IndexReader,
    fields: Fields,
}

impl TextIndex {
    #[tracing::instrument(level = "debug", skip_all)]
    pub fn open(dir: &Path) -> Result<Self> {
        let index = Index::open_in_dir(dir)
            .with_context(|| format!("cannot open the text index in {}", dir.display()))?;
        register_analyzer(&index)?;
        Self::from_index(index)
    }

    fn from_index(index: Index) -> Result<Self> {
        let reader = index
            .reader_builder()
            .reload_policy(tantivy::ReloadPolicy::Manual)
            .try_into()?;
        Ok(Self {
            fields: schema().1,
            index,
            reader,
        })
    }

    /// The index in `dir`, kept open for later searches in this process.
    pub fn shared(dir: &Path) -> Result<Arc<Self>> {
        static OPEN: Opened<TextIndex> = Opened::new();
        OPEN.get(dir, Self::open)
    }

    fn searcher(&self) -> Searcher {
        self.reader.searcher()
    }

    /// The query as Tantivy reads it; syntax it cannot read is taken as
    /// plain words, so any text is a valid query.
    fn parse(&self, query: &str) -> Box<dyn Query> {
        QueryParser::for_index(&self.index, vec![self.fields.text])
            .parse_query_lenient(query)
            .0
    }

    /// The best `k` rows that were current at build time and are in
    /// `scope`, leaving out the documents in `skip`; more when rows tie
    /// with the k-th.
    pub fn search_current(
        &self,
        query: &str,
        k: usize,
        scope: &Scope,
        skip: &HashSet<String>,
        stats: Option<&dyn Bm25StatisticsProvider>,
    ) -> Result<Vec<TextHit>> {
        let date = |t: &Option<DateTime<Utc>>| t.map(|t| index_date(t.timestamp_micros()));
        let filter = RowFilter {
            current_only: true,
            tenant: scope.tenant.clone(),
            since: date(&scope.since),
            until: date(&scope.until),
            skip: Arc::new(skip.clone()),
        };
        self.top(&Filtered::new(self.parse(query), filter), k, stats)
    }

    /// Every row of the documents in `docs` that matches, any version.
    pub fn search_docs(
        &self,
        query: &str,
        docs: &HashSet<String>,
        stats: Option<&dyn Bm25StatisticsProvider>,
    ) -> Result<Vec<TextHit>> {
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let q = BooleanQuery::new(vec![
            (Occur::Must, self.parse(query)),
            (Occur::Must, self.docs_query(docs)),
        ]);
        let n = self.searcher().search(&q, &Count)?;
        self.top(&q, n, stats)
    }

    fn docs_query(&self, docs: &HashSet<String>) -> Box<dyn Query> {
        Box::new(TermSetQuery::new(
            docs.iter()
                .map(|d| Term::from_field_text(self.fields.doc_id, d)),
        ))
    }

    /// The best `k` rows for `query` and every row tied with the k-th,
    /// scored with `stats`' collection statistics when given (a small
    /// tail index scored like the main one).
    fn top(
        &self,
        query: &dyn Query,
        k: usize,
        stats: Option<&dyn Bm25StatisticsProvider>,
    ) -> Result<Vec<TextHit>> {
        if k == 0 {
            return Ok(Vec::new());
        }
        let searcher = self.searcher();
        // Tantivy breaks ties by where a row sits in the index, which
        // depends on how the build split it; rows tied with the k-th are
        // all returned, so callers break ties by chunk. Up to a bound: a
        // query of words every chunk holds ties the whole index. A tie
        // costs one more search, straight to the bound: a tied search
        // cannot skip blocks, so each costs a pass over every match.
        let mut limit = k;
        let found = loop {
            let collector = TopDocs::with_limit(limit.saturating_add(1)).order_by_score();
            let found = match stats {
                Some(s) => searcher.search_with_statistics_provider(query, &collector, s)?,
                None => searcher.search(query, &collector)?,
            };
            match (found.get(k - 1), found.last()) {
                (Some(kth), Some(last))
                    if found.len() > limit && limit == k && tied(kth.0.into(), last.0.into()) =>
                {
                    limit = k.saturating_add(MAX_TIED)
                }
                _ => break found,
            }
        };
        let f = &self.fields;
        found
            .into_iter()
            .map(|(score, addr)| {
                let doc: TantivyDocument = searcher.doc(addr)?;
                let text = |field| {
                    doc.get_first(field)
                        .and_then(|v| v.as_str())
                        .unwrap_or_default()
                        .to_string()
                };
                Ok(TextHit {
                    doc_id: text(f.doc_id),
                    chunk_idx: doc
                        .get_first(f.chunk_idx)
                        .and_then(|v| v.as_i64())
                        .and_then(|i| i32::try_from(i).ok())
                        .unwrap_or_default(),
                    content_hash: text(f.content_hash),
                    score,
                })
            })
            .collect()
    }

    pub fn rows(&self) -> u64 {
        self.searcher().num_docs()
    }
}

/// BM25's collection statistics summed over several indexes (an index's
/// layers and its tail), so each scores a row as one index of them all would.
pub struct Statistics(Vec<Searcher>);

impl Statistics {
    pub fn of<'a>(indexes: impl IntoIterator<Item = &'a TextIndex>) -> Self {
        Self(indexes.into_iter().map(TextIndex::searcher).collect())
    }

    fn sum(&self, f: impl Fn(&Searcher) -> tantivy::Result<u64>) -> tantivy::Result<u64> {
        self.0.iter().map(f).sum()
    }
}

impl Bm25StatisticsProvider for Statistics {
    fn total_num_tokens(&self, field: Field) -> tantivy::Result<u64> {
        self.sum(|s| s.total_num_tokens(field))
    }

    fn total_num_docs(&self) -> tantivy::Result<u64> {
        self.sum(|s| s.total_num_docs())
    }

    fn doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        self.sum(|s| s.doc_freq(term))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row<'a>(
        doc: &'a str,
        idx: i32,
        text: &'a str,
        tenant: Option<&'a str>,
        day: i64,
    ) -> ChunkRow<'a> {
        ChunkRow {
            doc_id: doc,
            chunk_idx: idx,
            content_hash: "h",
            text,
            tenant,
            date: Some(day * 86_400_000_000),
        }
    }

    fn ids(hits: &[TextHit]) -> Vec<(&str, i32)> {
        hits.iter()
            .map(|h| (h.doc_id.as_str(), h.chunk_idx))
            .collect()
    }

    #[test]
    fn filters_run_inside_the_index() {
        let mut w = TextWriter::create(None, 32 << 20).unwrap();
        w.add(&row(
            "a",
            0,
            "The vendor delays hurt the launch.",
            Some("acme"),
            10,
        ))
        .unwrap();
        w.add(&row("b", 0, "A vendor delay, again.", Some("globex"), 20))
            .unwrap();
        w.add(&row(
            "c",
            0,
            "Vendor delay in a version not landed yet.",
            None,
            30,
        ))
        .unwrap();
        w.add(&row("d", 0, "Nothing to see.", Some("acme"), 40))
            .unwrap();
        let index = w.finish().unwrap();
        let none = HashSet::new();

        // Stemming: "delay" finds "delays"; pending rows are left out.
        let all = index
            .search_current("vendor delay", 10, &Scope::default(), &none, None)
            .unwrap();
        let mut found = ids(&all);
        found.sort();
        assert_eq!(found, [("a", 0), ("b", 0)]);

        let acme = Scope {
            tenant: Some("acme".into()),
            ..Default::default()
        };
        assert_eq!(
            ids(&index
                .search_current("vendor", 10, &acme, &none, None)
                .unwrap()),
            [("a", 0)]
        );

        let day = |d: i64| DateTime::from_timestamp(d * 86_400, 0).unwrap();
        let late = Scope {
            since: Some(day(15)),
            until: Some(day(21)),
            ..Default::default()
        };
        assert_eq!(
            ids(&index
                .search_current("vendor", 10, &late, &none, None)
                .unwrap()),
            [("b", 0)]
        );

        let future = Scope {
            since: Some(day(400_000)),
            ..Default::default()
        };
        assert_eq!(
            ids(&index
                .search_current("vendor", 10, &future, &none, None)
                .unwrap()),
            []
        );

        let skip: HashSet<String> = ["a".to_string()].into();
        assert_eq!(
            ids(&index
                .search_current("vendor", 10, &Scope::default(), &skip, None)
                .unwrap()),
            [("b", 0)]
        );

        // A segment with no tenant and no date at all (only pending rows)
        // passes nothing through those filters, and is no error.
        let mut w = TextWriter::create(None, 32 << 20).unwrap();
        w.add(&ChunkRow {
            date: None,
            ..row("p", 0, "vendor delay pending", None, 0)
        })
        .unwrap();
        let pending = w.finish().unwrap();
        for scope in [&acme, &late, &Scope::default()] {
            let hits = pending.search_current("vendor", 10, scope, &skip, None);
            assert_eq!(ids(&hits.unwrap()), []);
        }

        // Rows tied with the k-th all come back, whatever the index layout.
        let mut w = TextWriter::create(None, 32 << 20).unwrap();
        for doc in ["t1", "t2", "t3"] {
            w.add(&row(doc, 0, "tied words", Some("acme"), 1)).unwrap();
        }
        w.add(&row("t0", 0, "tied words tied", Some("acme"), 1))
            .unwrap();
        let tied = w.finish().unwrap();
        let none_skipped = HashSet::new();
        let hits = tied
            .search_current("tied", 2, &Scope::default(), &none_skipped, None)
            .unwrap();
        let mut got = ids(&hits);
        got.sort();
        assert_eq!(got, [("t0", 0), ("t1", 0), ("t2", 0), ("t3", 0)]);

        // By document, every version that matches.
        let docs: HashSet<String> = ["c".to_string(), "d".to_string()].into();
        assert_eq!(
            ids(&index.search_docs("vendor", &docs, None).unwrap()),
            [("c", 0)]
        );

        // Query syntax it cannot read is searched as words.
        assert!(index
            .search_current("vendor AND (", 10, &Scope::default(), &none, None)
            .is_ok());
    }
}
