//! What changed in a Delta table after a version, read from its commit
//! files: the data files holding rows committed since (the tail an index
//! has not seen yet) and the files whose rows left the table (deletes).
//!
//! Compactions (`dataChange: false`) move rows without changing them, so
//! they are ignored, except when they rewrite a tail file: then their
//! outputs hold tail rows and join the tail.

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Deserialize;
use url::Url;

/// The changes to one table between two versions.
#[derive(Debug, Default, Clone)]
pub struct Changes {
    /// Files, as URLs, that hold rows committed after the starting version.
    pub added: Vec<Url>,
    /// Rows in `added`, where the writer recorded statistics.
    pub added_rows: u64,
    /// Files, as URLs, whose rows were removed by a data change (a delete
    /// or a rewrite) after the starting version.
    pub removed: Vec<Url>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Action {
    add: Option<FileAction>,
    remove: Option<FileAction>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileAction {
    path: String,
    #[serde(default = "yes")]
    data_change: bool,
    stats: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stats {
    num_records: Option<u64>,
}

/// The changes to the table at `table` (a directory URL) in the commits
/// after `from` (from the first, when `None`) up to and including `to`. Fails when a commit file is gone
/// (log clean-up), so the caller rebuilds instead of trusting a gap.
pub async fn changes(
    store: &Arc<dyn ObjectStore>,
    table: &Url,
    from: Option<u64>,
    to: u64,
) -> Result<Changes> {
    let log = Path::from_url_path(table.path())
        .with_context(|| format!("invalid table path {table}"))?
        .join("_delta_log");
    // Tail files by path, with their row counts.
    let mut tail: BTreeSet<(String, u64)> = BTreeSet::new();
    let mut removed: BTreeSet<String> = BTreeSet::new();
    for version in from.map_or(0, |v| v + 1)..=to {
        let path = log.clone().join(format!("{version:020}.json"));
        let bytes = match store.get(&path).await {
            Ok(got) => got.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => bail!(
                "commit {version} of {table} is no longer in its log; the index must be rebuilt"
            ),
            Err(e) => return Err(e).with_context(|| format!("cannot read {path}")),
        };
        let mut adds = Vec::new();
        let mut compacted_tail = false;
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let action: Action = serde_json::from_slice(line)
                .with_context(|| format!("unreadable commit {version} of {table}"))?;
            if let Some(r) = action.remove {
                let was_tail = remove_path(&mut tail, &r.path);
                if r.data_change {
                    removed.insert(r.path);
                } else if was_tail {
                    compacted_tail = true;
                }
            }
            if let Some(a) = action.add {
                adds.push(a);
            }
        }
        for a in adds {
            if a.data_change || compacted_tail {
                let rows = a
                    .stats
                    .as_deref()
                    .and_then(|s| serde_json::from_str::<Stats>(s).ok())
                    .and_then(|s| s.num_records)
                    .unwrap_or(0);
                tail.insert((a.path, rows));
            }
        }
    }
    let url = |p: &str| {
        table
            .join(p)
            .with_context(|| format!("invalid file path {p} in {table}"))
    };
    Ok(Changes {
        added_rows: tail.iter().map(|(_, n)| n).sum(),
        added: tail.iter().map(|(p, _)| url(p)).collect::<Result<_>>()?,
        removed: removed.iter().map(|p| url(p)).collect::<Result<_>>()?,
    })
}

fn remove_path(tail: &mut BTreeSet<(String, u64)>, path: &str) -> bool {
    let found = tail.iter().find(|(p, _)| p == path).cloned();
    found.is_some_and(|f| tail.remove(&f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::PutPayload;

    async fn commit(store: &Arc<dyn ObjectStore>, version: u64, lines: &[&str]) {
        let path = Path::from(format!("t/_delta_log/{version:020}.json"));
        let body = lines.join("\n");
        store.put(&path, PutPayload::from(body)).await.unwrap();
    }

    fn add(path: &str, data_change: bool, rows: u64) -> String {
        format!(
            r#"{{"add":{{"path":"{path}","dataChange":{data_change},"stats":"{{\"numRecords\":{rows}}}"}}}}"#
        )
    }

    fn remove(path: &str, data_change: bool) -> String {
        format!(r#"{{"remove":{{"path":"{path}","dataChange":{data_change}}}}}"#)
    }

    #[tokio::test]
    async fn tails_follow_appends_deletes_and_compactions() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let table = Url::parse("memory:///t/").unwrap();
        commit(&store, 1, &[&add("a.parquet", true, 5)]).await;
        commit(&store, 2, &[&add("b.parquet", true, 3)]).await;
        // A compaction of an indexed file only: no change.
        commit(
            &store,
            3,
            &[&remove("a.parquet", false), &add("a2.parquet", false, 5)],
        )
        .await;
        // A compaction that takes in the tail file b: its output is tail.
        commit(
            &store,
            4,
            &[&remove("b.parquet", false), &add("c.parquet", false, 3)],
        )
        .await;
        // A delete that rewrote an indexed file.
        commit(
            &store,
            5,
            &[&remove("a2.parquet", true), &add("a3.parquet", true, 4)],
        )
        .await;

        let c = changes(&store, &table, Some(1), 5).await.unwrap();
        let names: Vec<&str> = c.added.iter().map(|u| u.path()).collect();
        assert_eq!(names, ["/t/a3.parquet", "/t/c.parquet"]);
        assert_eq!(c.added_rows, 7);
        assert_eq!(c.removed.len(), 1);
        assert_eq!(c.removed[0].path(), "/t/a2.parquet");

        // Nothing after the last version.
        assert!(changes(&store, &table, Some(5), 5)
            .await
            .unwrap()
            .is_empty());
        // A missing commit is an error, not an empty tail.
        let err = changes(&store, &table, Some(5), 6).await.unwrap_err();
        assert!(err.to_string().contains("rebuilt"), "{err}");
    }
}
