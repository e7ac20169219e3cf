//! Response cache keyed by (model, prompt version, content hash), so a re-run
//! over unchanged input makes no model calls and a changed document re-calls
//! only for its changed chunks.

use std::path::Path;

use anyhow::Result;
use redb::backends::InMemoryBackend;
use redb::{Database, ReadableDatabase, TableDefinition};

use docstream_models::chain::Key;

const RESPONSES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("responses");

pub struct Cache {
    db: Database,
    /// Kept in a file, so it holds answers from earlier runs.
    pub persistent: bool,
}

impl Cache {
    /// Opens the cache file, or an in-memory cache when `path` is `None` or
    /// the file is held by another docstream process.
    pub fn open(path: Option<&Path>) -> Result<Self> {
        if let Some(path) = path {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            match Database::create(path) {
                Ok(db) => {
                    return Ok(Self {
                        db,
                        persistent: true,
                    })
                }
                Err(e) => tracing::warn!(
                    path = %path.display(),
                    "model cache unavailable ({e}); caching in memory for this run"
                ),
            }
        }
        Ok(Self {
            db: Database::builder().create_with_backend(InMemoryBackend::new())?,
            persistent: false,
        })
    }

    pub fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Vec<u8>>>> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(RESPONSES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(vec![None; keys.len()]),
            Err(e) => return Err(e.into()),
        };
        keys.iter()
            .map(|k| Ok(table.get(k.as_slice())?.map(|v| v.value().to_vec())))
            .collect()
    }

    pub fn put_many<'a>(
        &self,
        entries: impl IntoIterator<Item = (&'a Key, &'a [u8])>,
    ) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(RESPONSES)?;
            for (k, v) in entries {
                table.insert(k.as_slice(), v)?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use docstream_models::chain::key;

    #[test]
    fn round_trip_and_persistence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.redb");
        let (a, b) = (key("m", "v1", "hello"), key("m", "v2", "hello"));
        assert_ne!(a, b, "prompt version is part of the key");
        {
            let cache = Cache::open(Some(&path)).unwrap();
            assert_eq!(cache.get_many(&[a]).unwrap(), vec![None]);
            cache.put_many([(&a, b"one".as_slice())]).unwrap();
        }
        let cache = Cache::open(Some(&path)).unwrap();
        assert_eq!(
            cache.get_many(&[a, b]).unwrap(),
            vec![Some(b"one".to_vec()), None]
        );
    }
}
