//! Which stages are done for a document version, read from the `lineage`
//! table's keys, and which are still to run.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::contract::failure::ErrorKind;
use crate::contract::identity::DocKey;
use crate::sinks::landed::RowKey;
use crate::stages::config::Stage;

/// `lineage.status` of a stage that ran and landed its rows.
pub const OK: &str = "ok";
/// `lineage.status` of a stage that failed; `error_kind` says how.
pub const FAILED: &str = "failed";
/// `lineage.status` of rows written before fingerprints, taken as the
/// output of the fingerprint current when they were adopted.
pub const ADOPTED: &str = "adopted";

/// Which failed stages a run tries again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Retry {
    /// Failures the endpoint may not repeat: rate limits, timeouts,
    /// unavailable endpoints.
    #[default]
    Retryable,
    /// None: a failure stands until its stage changes.
    None,
    /// Every failure, terminal ones (rejected input, invalid output) too.
    All,
}

impl std::str::FromStr for Retry {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "retryable" => Ok(Retry::Retryable),
            "none" => Ok(Retry::None),
            "all" => Ok(Retry::All),
            _ => Err(format!("expected retryable, none or all, got '{s}'")),
        }
    }
}

impl Retry {
    /// Whether a lineage row with this status and error kind means the
    /// stage need not run again under its fingerprint.
    pub fn settles(self, status: &str, error_kind: &str) -> bool {
        match status {
            OK | ADOPTED => true,
            FAILED => match self {
                Retry::None => true,
                Retry::All => false,
                Retry::Retryable => !ErrorKind::is_retryable(error_kind),
            },
            _ => false,
        }
    }
}

/// A pipeline's stages as lineage sees them.
pub struct Ledger<'a> {
    stages: &'a [Stage],
    retry: Retry,
}

impl<'a> Ledger<'a> {
    pub fn new(stages: &'a [Stage], retry: Retry) -> Self {
        Self { stages, retry }
    }

    pub fn stages(&self) -> &'a [Stage] {
        self.stages
    }

    /// The stages still to run for one version, given the lineage table's
    /// keys: each is probed for every outcome its fingerprint may have.
    pub fn todo(&self, lineage: &HashSet<RowKey>, doc_id: &str, hash: &str) -> BTreeSet<String> {
        let outcomes = [(OK, ""), (ADOPTED, "")]
            .into_iter()
            .chain(ErrorKind::STAGE_KINDS.iter().map(|k| (FAILED, k.as_str())));
        let outcomes: Vec<(&str, &str)> = outcomes.collect();
        self.stages
            .iter()
            .filter(|s| {
                !outcomes.iter().any(|(status, kind)| {
                    self.retry.settles(status, kind)
                        && lineage.contains(&key(doc_id, hash, s, status, kind))
                })
            })
            .map(|s| s.name.clone())
            .collect()
    }

    /// For every version in `lineage`, the stages that are done, as bits in
    /// pipeline order: one pass over the keys, for decisions about many
    /// versions at once.
    pub fn done_by_version<'k>(
        &self,
        lineage: impl IntoIterator<Item = &'k RowKey>,
    ) -> HashMap<DocKey, u64> {
        let index: HashMap<(&str, &str), usize> = self
            .stages
            .iter()
            .enumerate()
            .map(|(i, s)| ((s.name.as_str(), s.fingerprint.as_str()), i))
            .collect();
        let mut done: HashMap<DocKey, u64> = HashMap::new();
        for k in lineage {
            let [doc, hash, stage, fp, status, kind] = k.as_slice() else {
                continue;
            };
            let Some(&i) = index.get(&(stage.as_str(), fp.as_str())) else {
                continue;
            };
            if self.retry.settles(status, kind) && i < 64 {
                *done.entry((doc.clone(), hash.clone())).or_default() |= 1 << i;
            }
        }
        done
    }

    /// The stages whose bits are not in `done`.
    pub fn missing(&self, done: u64) -> BTreeSet<String> {
        self.stages
            .iter()
            .enumerate()
            .filter(|(i, _)| *i >= 64 || done & (1 << i) == 0)
            .map(|(_, s)| s.name.clone())
            .collect()
    }
}

/// A `lineage` key (see `contract::tables::version_key`).
fn key(doc_id: &str, hash: &str, stage: &Stage, status: &str, kind: &str) -> RowKey {
    [doc_id, hash, &stage.name, &stage.fingerprint, status, kind]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(parts: [&str; 6]) -> RowKey {
        parts.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn stages_run_unless_their_fingerprint_settled_the_version() {
        let stages = [
            Stage::named("chunks", "c2"),
            Stage::named("risks", "r1"),
            Stage::named("summaries", "s1"),
        ];
        let lineage: HashSet<RowKey> = [
            // chunks ran under an older fingerprint only.
            row(["d", "h", "chunks", "c1", OK, ""]),
            row(["d", "h", "risks", "r1", FAILED, "model_rate_limited"]),
            row(["d", "h", "summaries", "s1", FAILED, "model_invalid_output"]),
        ]
        .into();
        let todo = |retry| Ledger::new(&stages, retry).todo(&lineage, "d", "h");
        assert_eq!(
            todo(Retry::Retryable),
            ["chunks", "risks"].map(String::from).into()
        );
        assert_eq!(todo(Retry::None), ["chunks"].map(String::from).into());
        assert_eq!(
            todo(Retry::All),
            ["chunks", "risks", "summaries"].map(String::from).into()
        );

        // A retry that succeeded settles the stage.
        let mut retried = lineage.clone();
        retried.insert(row(["d", "h", "risks", "r1", OK, ""]));
        let ledger = Ledger::new(&stages, Retry::Retryable);
        assert_eq!(
            ledger.todo(&retried, "d", "h"),
            ["chunks"].map(String::from).into()
        );

        // One pass over the keys agrees with probing.
        let done = ledger.done_by_version(&retried);
        let bits = done[&("d".to_string(), "h".to_string())];
        assert_eq!(ledger.missing(bits), ledger.todo(&retried, "d", "h"));
        assert_eq!(ledger.missing(0).len(), 3);
    }
}
