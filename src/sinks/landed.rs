//! Which document versions each table holds, kept current from the Delta
//! log, so any number of writers land each version once.
//!
//! Every docstream append to a keyed table carries a `txn` action with the
//! shared app id [`APPEND_APP_ID`] and lists its keys in `commitInfo`
//! ([`KEYS_FIELD`]). Two appends that race for the same table version
//! therefore conflict in Delta's own check (the log is written with
//! put-if-absent: a rename locally, a conditional put on S3), and the loser
//! reads the winners' keys from their commit files, drops what landed
//! meanwhile and commits again. Nothing is locked: writers of different
//! documents write their files in parallel and only serialize the commit.

use std::collections::HashSet;

use anyhow::{Context, Result};
use deltalake::arrow::array::AsArray;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::Transaction;
use serde_json::Value;

use super::lake::{register, utf8, Lake};
use crate::contract::tables::version_key;

/// The app id every keyed append carries, so concurrent appends conflict.
pub const APPEND_APP_ID: &str = "docstream.append";

/// The `commitInfo` field that lists an append's keys.
pub const KEYS_FIELD: &str = "docstreamKeys";

/// The values of a table's [`version_key`] columns for one row.
pub type RowKey = Vec<String>;

/// Whether a table with these columns is keyed: it has the version's
/// `doc_id` and `content_hash` (the other key columns may be missing, and
/// then count as empty).
pub(super) fn is_keyed(has: impl Fn(&str) -> bool) -> bool {
    version_key("documents")[..2].iter().all(|c| has(c))
}

/// The keys a table held at `version`.
#[derive(Debug, Default)]
pub(super) struct Landed {
    pub version: u64,
    pub keys: HashSet<RowKey>,
}

/// What one commit did to a table's keys.
enum Change {
    Added(Vec<RowKey>),
    /// Rows were added or removed without a key list (a delete, or a writer
    /// that is not docstream): only a full read knows the keys now.
    Unknown,
}

impl Lake {
    /// Brings `table`'s known keys up to its latest version: the keys listed
    /// by each commit since the last look, or a full read when a commit does
    /// not list them. Returns the app ids those commits advanced.
    pub(super) async fn catch_up(&mut self, table: &str) -> Result<HashSet<String>> {
        if self.is_current(table).await? {
            return Ok(HashSet::new());
        }
        self.refresh(table).await?;
        let mut advanced = HashSet::new();
        let Some(t) = self.table(table).await? else {
            self.landed.remove(table);
            return Ok(advanced);
        };
        let (Some(latest), log) = (t.version(), t.log_store()) else {
            return Ok(advanced);
        };
        let known = self.landed.get(table).map(|l| l.version);
        let mut added = Vec::new();
        let mut complete = known.is_some();
        if let Some(known) = known {
            for version in known + 1..=latest {
                let entry = log
                    .read_commit_entry(version)
                    .await
                    .with_context(|| format!("cannot read commit {version} of table {table}"))?;
                // A commit already cleaned from the log: read the table instead.
                let Some(entry) = entry else {
                    complete = false;
                    break;
                };
                match parse_commit(&entry, &mut advanced)
                    .with_context(|| format!("commit {version} of table {table}"))?
                {
                    Change::Added(keys) => added.extend(keys),
                    Change::Unknown => complete = false,
                }
            }
        }
        if complete {
            if let Some(l) = self.landed.get_mut(table) {
                l.keys.extend(added);
                l.version = latest;
            }
        } else {
            let keys = self.read_keys(table).await?;
            self.landed.insert(
                table.to_string(),
                Landed {
                    version: latest,
                    keys,
                },
            );
        }
        Ok(advanced)
    }

    /// Whether `table` has no commit after the one whose keys are known:
    /// one read of the next commit file, where a refresh lists the whole
    /// log. A lone writer asks this before every append.
    async fn is_current(&self, table: &str) -> Result<bool> {
        let (Some(t), Some(landed)) = (self.tables.get(table), self.landed.get(table)) else {
            return Ok(false);
        };
        if t.version() != Some(landed.version) {
            return Ok(false);
        }
        let next = t
            .log_store()
            .read_commit_entry(landed.version + 1)
            .await
            .with_context(|| format!("cannot read the log of table {table}"))?;
        Ok(next.is_none())
    }

    /// Which of `keys` (doc_id, content_hash) already landed in `table`,
    /// under any stage fingerprint, as of its latest version.
    pub async fn landed_among<'k>(
        &mut self,
        table: &str,
        keys: impl IntoIterator<Item = (&'k str, &'k str)>,
    ) -> Result<HashSet<(String, String)>> {
        let landed = self.landed_keys(table).await?;
        let wanted: HashSet<(&str, &str)> = keys.into_iter().collect();
        Ok(landed
            .iter()
            .filter(|k| k.len() >= 2 && wanted.contains(&(k[0].as_str(), k[1].as_str())))
            .map(|k| (k[0].clone(), k[1].clone()))
            .collect())
    }

    /// Every key `table` holds as of its latest version (see
    /// [`version_key`]).
    pub async fn landed_keys(&mut self, table: &str) -> Result<&HashSet<RowKey>> {
        static NONE: std::sync::OnceLock<HashSet<RowKey>> = std::sync::OnceLock::new();
        self.catch_up(table).await?;
        Ok(match self.landed.get(table) {
            Some(l) => &l.keys,
            None => NONE.get_or_init(HashSet::new),
        })
    }

    /// Every distinct key in `table` (empty when it is not keyed).
    async fn read_keys(&mut self, table: &str) -> Result<HashSet<RowKey>> {
        let mut keys = HashSet::new();
        let Some(t) = self.table(table).await? else {
            return Ok(keys);
        };
        let ctx = SessionContext::new();
        register(&ctx, table, t).await?;
        let schema = ctx.table(table).await?.schema().clone();
        let has = |c: &str| schema.has_column_with_unqualified_name(c);
        if !is_keyed(has) {
            return Ok(keys);
        }
        let columns: Vec<String> = version_key(table)
            .iter()
            .map(|c| match has(c) {
                true => format!("coalesce(CAST({c} AS VARCHAR), '') AS {c}"),
                false => format!("'' AS {c}"),
            })
            .collect();
        let sql = format!("SELECT DISTINCT {} FROM {table}", columns.join(", "));
        for batch in ctx.sql(&sql).await?.collect().await? {
            let columns = batch
                .columns()
                .iter()
                .map(utf8)
                .collect::<Result<Vec<_>>>()?;
            for row in 0..batch.num_rows() {
                keys.insert(
                    columns
                        .iter()
                        .map(|c| c.as_string::<i32>().value(row).to_string())
                        .collect(),
                );
            }
        }
        Ok(keys)
    }
}

/// The `txn` action and `commitInfo` fields of an append of `keys` to a
/// table read at `read_version` (`None`: before its first commit).
pub(super) fn append_actions(
    read_version: Option<u64>,
    keys: &[RowKey],
) -> (Transaction, Vec<(String, Value)>) {
    let listed = keys
        .iter()
        .map(|k| {
            Value::from(
                k.iter()
                    .map(|v| Value::from(v.as_str()))
                    .collect::<Vec<_>>(),
            )
        })
        .collect::<Vec<_>>();
    (
        Transaction::new(
            APPEND_APP_ID,
            read_version.map_or(0, |v| i64::try_from(v + 1).unwrap_or(i64::MAX)),
        ),
        vec![(KEYS_FIELD.to_string(), Value::Array(listed))],
    )
}

/// Reads one commit file (newline-delimited actions).
fn parse_commit(entry: &[u8], advanced: &mut HashSet<String>) -> Result<Change> {
    let mut listed: Option<Vec<RowKey>> = None;
    let (mut adds, mut removes) = (false, false);
    let changes_data = |a: &Value| a.get("dataChange").and_then(Value::as_bool) != Some(false);
    for line in entry.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let action: Value = serde_json::from_slice(line).context("not a Delta action")?;
        if let Some(add) = action.get("add") {
            adds |= changes_data(add);
        } else if let Some(remove) = action.get("remove") {
            removes |= changes_data(remove);
        } else if let Some(id) = action.pointer("/txn/appId").and_then(Value::as_str) {
            advanced.insert(id.to_string());
        } else if let Some(keys) = action.pointer(&format!("/commitInfo/{KEYS_FIELD}")) {
            listed = Some(serde_json::from_value(keys.clone()).context("bad key list")?);
        }
    }
    Ok(match listed {
        _ if removes => Change::Unknown,
        Some(keys) => Change::Added(keys),
        None if adds => Change::Unknown,
        None => Change::Added(Vec::new()),
    })
}
