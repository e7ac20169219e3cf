//! A folder or bucket prefix as a document source, listed recursively through
//! `object_store`.

use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use serde::Deserialize;
use url::Url;

use crate::storage::{as_directory, StorageOptions};

/// `[source]` in pipeline files: what `backfill` reads by default.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourceConfig {
    pub uri: Option<String>,
    pub tenant: String,
    pub parallelism: usize,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            uri: None,
            tenant: "default".into(),
            parallelism: 0,
        }
    }
}

pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    url: Url,
}

/// One object to process.
#[derive(Debug, Clone)]
pub struct SourceObject {
    pub uri: String,
    pub meta: ObjectMeta,
}

impl Bucket {
    pub fn open(url: &Url, storage: &StorageOptions) -> Result<Self> {
        if let Ok(path) = url.to_file_path() {
            anyhow::ensure!(
                path.is_dir(),
                "{} is not a folder; give the folder of documents to backfill",
                path.display()
            );
        }
        let (store, prefix) = storage.object_store(url)?;
        Ok(Self {
            store,
            prefix,
            url: as_directory(url.clone()),
        })
    }

    /// Every object under the prefix, sorted by key so runs are repeatable.
    /// Holds metadata only (about 200 bytes an object), never contents.
    pub async fn list(&self) -> Result<Vec<SourceObject>> {
        let mut objects: Vec<SourceObject> = self
            .store
            .list(Some(&self.prefix))
            .map_ok(|meta| SourceObject {
                uri: self.uri_of(&meta.location),
                meta,
            })
            .try_collect()
            .await
            .with_context(|| format!("cannot list {}: check the path and credentials", self.url))?;
        objects.retain(|o| !self.is_hidden(&o.meta.location));
        objects.sort_by(|a, b| a.meta.location.cmp(&b.meta.location));
        Ok(objects)
    }

    /// What the URI of every object under the prefix starts with.
    pub fn uri_prefix(&self) -> String {
        let uri = self.uri_of(&self.prefix);
        match uri.ends_with('/') {
            true => uri,
            false => format!("{uri}/"),
        }
    }

    pub async fn read(&self, object: &SourceObject) -> object_store::Result<Bytes> {
        self.store.get(&object.meta.location).await?.bytes().await
    }

    /// Dot-files and dot-folders below the prefix (`.git`, `.DS_Store`) are
    /// not documents; dots above it are the user's choice.
    fn is_hidden(&self, location: &Path) -> bool {
        location
            .prefix_match(&self.prefix)
            .is_some_and(|mut rest| rest.any(|p| p.as_ref().starts_with('.')))
    }

    /// The object's URI as users see it: the source URL plus the key's rest.
    fn uri_of(&self, location: &Path) -> String {
        match self.url.scheme() {
            "file" => format!("file:///{location}"),
            _ => {
                let mut base = self.url.clone();
                base.set_path(&format!("/{location}"));
                base.to_string()
            }
        }
    }
}
