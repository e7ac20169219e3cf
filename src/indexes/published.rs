//! Where a derived index lives: `<lake>/_indexes/<name>/`, one folder per
//! generation plus a `manifest.json` that names the current one and the
//! table versions it covers. Publishing uploads a whole generation first
//! and then replaces the manifest in one put, so a crash at any point
//! leaves the old index or the new one, never a mix. Generations never
//! change once published, so readers of a remote lake cache them locally.

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use url::Url;

use crate::storage::{as_directory, cache_home, StorageOptions};

/// Bumped when an index's layout changes: older generations are rebuilt.
pub const FORMAT: u32 = 1;

/// Unpublished generations younger than this may be another builder's
/// upload in progress, so clean-up leaves them alone.
const ABANDONED_AFTER_SECS: i64 = 3600;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub generation: String,
    /// Table name → the Delta version the index was built from.
    pub covers: BTreeMap<String, u64>,
    pub rows: u64,
    pub bytes: u64,
    pub built_at: DateTime<Utc>,
}

/// When generation `name` (`g<millis>-<id>`) was started.
fn born_ms(name: &str) -> Option<i64> {
    name.strip_prefix('g')?.split('-').next()?.parse().ok()
}

/// One index's folder in the lake.
pub struct IndexHome {
    name: String,
    url: Url,
    storage: StorageOptions,
    store: Arc<dyn ObjectStore>,
    prefix: Path,
}

impl IndexHome {
    pub fn new(lake: &Url, storage: &StorageOptions, name: &str) -> Result<Self> {
        let url = as_directory(as_directory(lake.clone()).join(&format!("_indexes/{name}"))?);
        let (store, prefix) = storage.object_store(&url)?;
        Ok(Self {
            name: name.to_string(),
            url,
            storage: storage.clone(),
            store,
            prefix,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The published manifest; `None` before the first build, or when it
    /// was written by another index format (it is then rebuilt).
    pub async fn manifest(&self) -> Result<Option<Manifest>> {
        let path = self.prefix.clone().join("manifest.json");
        let bytes = match self.store.get(&path).await {
            Ok(got) => got.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", self.url)),
        };
        let manifest: Manifest = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "unreadable manifest in {}; run `docstream index --rebuild`",
                self.url
            )
        })?;
        Ok((manifest.format == FORMAT).then_some(manifest))
    }

    /// A new generation's name: time first, so names sort by age.
    pub fn new_generation() -> String {
        let id = uuid::Uuid::new_v4().simple().to_string();
        format!("g{}-{}", Utc::now().timestamp_millis(), &id[..8])
    }

    /// Uploads the files of `staged` as `manifest.generation`, then makes
    /// it current. Returns the manifest with its size filled in.
    pub async fn publish(&self, staged: &FsPath, mut manifest: Manifest) -> Result<Manifest> {
        let folder = self.prefix.clone().join(manifest.generation.as_str());
        let mut bytes = 0;
        for entry in std::fs::read_dir(staged)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str().filter(|n| !n.starts_with('.')) else {
                continue;
            };
            if !entry.file_type()?.is_file() {
                continue;
            }
            bytes += entry.metadata()?.len();
            let mut file = tokio::fs::File::open(entry.path()).await?;
            let mut out = BufWriter::new(self.store.clone(), folder.clone().join(name));
            tokio::io::copy(&mut file, &mut out).await?;
            out.shutdown().await.with_context(|| {
                format!("cannot upload the {} index to {}", self.name, self.url)
            })?;
        }
        manifest.bytes = bytes;
        let json = serde_json::to_vec_pretty(&manifest)?;
        let previous = self.manifest().await.ok().flatten();
        self.store
            .put(
                &self.prefix.clone().join("manifest.json"),
                PutPayload::from(json),
            )
            .await
            .with_context(|| format!("cannot publish the {} index to {}", self.name, self.url))?;
        let mut keep = vec![manifest.generation.clone()];
        keep.extend(previous.map(|p| p.generation));
        if let Err(e) = self.sweep(&keep).await {
            tracing::warn!(index = self.name, "cannot remove old index files: {e:#}");
        }
        Ok(manifest)
    }

    /// Deletes generations other than `keep` that are old enough to be
    /// abandoned, not in progress.
    async fn sweep(&self, keep: &[String]) -> Result<()> {
        let cutoff = Utc::now().timestamp_millis() - ABANDONED_AFTER_SECS * 1000;
        let listing = self.store.list_with_delimiter(Some(&self.prefix)).await?;
        for dir in listing.common_prefixes {
            let Some(name) = dir.filename().map(str::to_string) else {
                continue;
            };
            if keep.contains(&name) || born_ms(&name).is_none_or(|ms| ms > cutoff) {
                continue;
            }
            let files: Vec<_> = self.store.list(Some(&dir)).try_collect().await?;
            for f in files {
                self.store.delete(&f.location).await?;
            }
        }
        Ok(())
    }

    /// A local folder holding `manifest`'s generation: the lake's own
    /// folder for a local lake, else a cached download.
    pub async fn local_copy(&self, manifest: &Manifest) -> Result<PathBuf> {
        if let Ok(path) = self.url.to_file_path() {
            return Ok(path.join(&manifest.generation));
        }
        // Two servers can hold the same bucket name.
        let endpoint = self.storage.s3_endpoint.as_deref().unwrap_or_default();
        let lake_key =
            hex::encode(&Sha256::digest(format!("{endpoint} {}", self.url).as_bytes())[..8]);
        let home = cache_home().join("indexes").join(lake_key);
        let dir = home.join(&manifest.generation);
        if dir.join(".complete").exists() {
            return Ok(dir);
        }
        std::fs::create_dir_all(&home)
            .with_context(|| format!("cannot create the index cache {}", home.display()))?;
        let part = tempfile::tempdir_in(&home)?;
        let folder = self.prefix.clone().join(manifest.generation.as_str());
        let files: Vec<_> = self.store.list(Some(&folder)).try_collect().await?;
        for f in files {
            let Some(name) = f.location.filename() else {
                continue;
            };
            let mut stream = self.store.get(&f.location).await?.into_stream();
            let mut out = tokio::fs::File::create(part.path().join(name)).await?;
            while let Some(chunk) = stream.try_next().await? {
                out.write_all(&chunk).await?;
            }
            out.flush().await?;
        }
        std::fs::write(part.path().join(".complete"), b"")?;
        let part = part.keep();
        if let Err(e) = std::fs::rename(&part, &dir) {
            // Another reader cached it first.
            let _ = std::fs::remove_dir_all(&part);
            if !dir.join(".complete").exists() {
                return Err(e)
                    .with_context(|| format!("cannot cache the index in {}", dir.display()));
            }
        }
        // Generations abandoned long ago are not read again; younger ones
        // may still be, by searches that started before this publish.
        let cutoff = Utc::now().timestamp_millis() - ABANDONED_AFTER_SECS * 1000;
        for entry in std::fs::read_dir(&home)?.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if entry.path() != dir && born_ms(&name).is_some_and(|ms| ms < cutoff) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(generation: &str) -> Manifest {
        Manifest {
            format: FORMAT,
            generation: generation.to_string(),
            covers: [("chunks".to_string(), 3)].into(),
            rows: 2,
            bytes: 0,
            built_at: Utc::now(),
        }
    }

    #[tokio::test]
    async fn publishing_replaces_the_manifest_after_the_files() {
        let lake = tempfile::tempdir().unwrap();
        let url = Url::from_directory_path(lake.path()).unwrap();
        let home = IndexHome::new(&url, &StorageOptions::default(), "text").unwrap();
        assert!(home.manifest().await.unwrap().is_none());

        let staged = tempfile::tempdir().unwrap();
        std::fs::write(staged.path().join("a.idx"), b"0123456789").unwrap();
        std::fs::write(staged.path().join(".lock"), b"").unwrap();
        let first = IndexHome::new_generation();
        let published = home.publish(staged.path(), manifest(&first)).await.unwrap();
        assert_eq!(published.bytes, 10);
        let read = home.manifest().await.unwrap().unwrap();
        assert_eq!(read.generation, first);
        let dir = home.local_copy(&read).await.unwrap();
        assert_eq!(std::fs::read(dir.join("a.idx")).unwrap(), b"0123456789");
        // Hidden files (Tantivy's locks) are not published.
        assert!(!dir.join(".lock").exists());

        // A second generation: both stay, since readers may hold the first.
        let second = IndexHome::new_generation();
        home.publish(staged.path(), manifest(&second))
            .await
            .unwrap();
        assert_eq!(home.manifest().await.unwrap().unwrap().generation, second);
        assert!(lake.path().join("_indexes/text").join(&first).is_dir());

        // A manifest of another format is not trusted: rebuild.
        let mut old = manifest(&second);
        old.format = FORMAT + 1;
        std::fs::write(
            lake.path().join("_indexes/text/manifest.json"),
            serde_json::to_vec(&old).unwrap(),
        )
        .unwrap();
        assert!(home.manifest().await.unwrap().is_none());
    }
}
