//! Row filters for text search that keep Tantivy's block-max WAND. A
//! filter joined to the query as a boolean clause turns the query's term
//! union into an intersection, which Tantivy scores row by row: a query of
//! common words then scores every row. Here the query runs alone, and a row
//! is checked against the filter, from fast fields, only when it would
//! enter the top k.

use std::collections::HashSet;
use std::sync::Arc;

use tantivy::columnar::{Column, StrColumn};
use tantivy::query::{EmptyScorer, EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::{DateTime, DocId, DocSet, Score, SegmentReader, Term, TERMINATED};

/// Which rows a search keeps. Each field names the fast field it reads.
#[derive(Clone, Debug, Default)]
pub struct RowFilter {
    /// Only rows whose bool field `current` is true.
    pub current_only: bool,
    /// Only rows whose `tenant` is this.
    pub tenant: Option<String>,
    /// Only rows whose `date` is at or after this.
    pub since: Option<DateTime>,
    /// Only rows whose `date` is before this.
    pub until: Option<DateTime>,
    /// Never rows whose `doc_id` is one of these.
    pub skip: Arc<HashSet<String>>,
}

/// `query`, keeping only the rows `filter` admits.
pub struct Filtered {
    query: Box<dyn Query>,
    filter: RowFilter,
}

impl Filtered {
    pub fn new(query: Box<dyn Query>, filter: RowFilter) -> Self {
        Self { query, filter }
    }
}

impl Clone for Filtered {
    fn clone(&self) -> Self {
        Self {
            query: self.query.box_clone(),
            filter: self.filter.clone(),
        }
    }
}

impl std::fmt::Debug for Filtered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Filtered({:?}, {:?})", self.query, self.filter)
    }
}

impl Query for Filtered {
    fn weight(&self, enable_scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(FilteredWeight {
            inner: self.query.weight(enable_scoring)?,
            filter: self.filter.clone(),
        }))
    }

    fn query_terms<'a>(&'a self, visitor: &mut dyn FnMut(&'a Term, bool)) {
        self.query.query_terms(visitor)
    }
}

struct FilteredWeight {
    inner: Box<dyn Weight>,
    filter: RowFilter,
}

impl Weight for FilteredWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let Some(admit) = Admit::for_segment(&self.filter, reader)? else {
            return Ok(Box::new(EmptyScorer));
        };
        let inner = self.inner.scorer(reader, boost)?;
        let mut scorer = FilteredScorer { inner, admit };
        scorer.skip_rejected();
        Ok(Box::new(scorer))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        match Admit::for_segment(&self.filter, reader)? {
            Some(admit) if admit.admits(doc) => self.inner.explain(reader, doc),
            _ => Err(tantivy::TantivyError::InvalidArgument(format!(
                "document {doc} is filtered out"
            ))),
        }
    }

    fn for_each_pruning(
        &self,
        threshold: Score,
        reader: &SegmentReader,
        callback: &mut dyn FnMut(DocId, Score) -> Score,
    ) -> tantivy::Result<()> {
        let Some(admit) = Admit::for_segment(&self.filter, reader)? else {
            return Ok(());
        };
        // A rejected row leaves the threshold where the last admitted one
        // put it: the bound only ever comes from rows that are kept.
        let mut bound = threshold;
        self.inner
            .for_each_pruning(threshold, reader, &mut |doc, score| {
                if admit.admits(doc) {
                    bound = callback(doc, score);
                }
                bound
            })
    }
}

/// A segment's fast fields for the checks its filter makes.
struct Admit {
    current: Option<Column<bool>>,
    tenant: Option<(StrColumn, u64)>,
    date: Option<(Column<DateTime>, Option<DateTime>, Option<DateTime>)>,
    skip: Option<(StrColumn, HashSet<u64>)>,
}

impl Admit {
    /// `None` when no row of the segment can pass. A segment holds a
    /// column only when some row has a value, so a missing `tenant` or
    /// `date` column passes no row through that filter.
    fn for_segment(filter: &RowFilter, reader: &SegmentReader) -> tantivy::Result<Option<Self>> {
        let fast = reader.fast_fields();
        let tenant = match &filter.tenant {
            None => None,
            Some(t) => {
                let Some(column) = fast.str("tenant")? else {
                    return Ok(None);
                };
                match column.dictionary().term_ord(t)? {
                    Some(ord) => Some((column, ord)),
                    None => return Ok(None),
                }
            }
        };
        let date = match filter.since.is_some() || filter.until.is_some() {
            false => None,
            true => match fast.column_opt::<DateTime>("date")? {
                Some(column) => Some((column, filter.since, filter.until)),
                None => return Ok(None),
            },
        };
        let mut skip = None;
        if let Some(column) = fast.str("doc_id")?.filter(|_| !filter.skip.is_empty()) {
            let mut ords = HashSet::new();
            for id in filter.skip.iter() {
                ords.extend(column.dictionary().term_ord(id)?);
            }
            skip = Some((column, ords)).filter(|(_, ords)| !ords.is_empty());
        }
        let current = match filter.current_only {
            false => None,
            true => match fast.column_opt::<bool>("current")? {
                Some(column) => Some(column),
                None => return Ok(None),
            },
        };
        Ok(Some(Self {
            current,
            tenant,
            date,
            skip,
        }))
    }

    fn admits(&self, doc: DocId) -> bool {
        if let Some(current) = &self.current {
            if current.first(doc) != Some(true) {
                return false;
            }
        }
        if let Some((column, ord)) = &self.tenant {
            if !column.term_ords(doc).any(|o| o == *ord) {
                return false;
            }
        }
        if let Some((column, since, until)) = &self.date {
            let Some(date) = column.first(doc) else {
                return false;
            };
            if since.is_some_and(|s| date < s) || until.is_some_and(|u| date >= u) {
                return false;
            }
        }
        if let Some((column, ords)) = &self.skip {
            if column.term_ords(doc).any(|o| ords.contains(&o)) {
                return false;
            }
        }
        true
    }
}

/// The rows of `inner` that `admit` passes, for the paths that do not
/// prune (counts, and collectors other than the top by score).
struct FilteredScorer {
    inner: Box<dyn Scorer>,
    admit: Admit,
}

impl FilteredScorer {
    fn skip_rejected(&mut self) -> DocId {
        let mut doc = self.inner.doc();
        while doc != TERMINATED && !self.admit.admits(doc) {
            doc = self.inner.advance();
        }
        doc
    }
}

impl DocSet for FilteredScorer {
    fn advance(&mut self) -> DocId {
        self.inner.advance();
        self.skip_rejected()
    }

    fn seek(&mut self, target: DocId) -> DocId {
        self.inner.seek(target);
        self.skip_rejected()
    }

    fn doc(&self) -> DocId {
        self.inner.doc()
    }

    fn size_hint(&self) -> u32 {
        self.inner.size_hint()
    }
}

impl Scorer for FilteredScorer {
    fn score(&mut self) -> Score {
        self.inner.score()
    }
}
