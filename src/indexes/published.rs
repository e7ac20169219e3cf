//! Where a derived index lives: `<lake>/_indexes/<name>/`, one folder per
//! generation plus a `manifest.json` that names the current layers (a full
//! build, then generations built from what each earlier one had not seen)
//! and the table versions they cover. Publishing uploads a whole generation
//! first and then replaces the manifest in one put, so a crash at any point
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
pub const FORMAT: u32 = 3;

/// Unpublished generations younger than this may be another builder's
/// upload in progress, so clean-up leaves them alone.
const ABANDONED_AFTER_SECS: i64 = 3600;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// Oldest first; never empty once published.
    pub layers: Vec<Layer>,
    pub built_at: DateTime<Utc>,
}

/// One generation of an index: rows of the tables up to `covers`, from
/// the versions the layer before it covered (from nothing for the first).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Layer {
    pub generation: String,
    /// Table name → the Delta version the layer was built from.
    pub covers: BTreeMap<String, u64>,
    pub rows: u64,
    pub bytes: u64,
}

impl Layer {
    /// A layer to be built now, covering `covers`.
    pub fn new(covers: BTreeMap<String, u64>, rows: u64) -> Self {
        Self {
            generation: IndexHome::new_generation(),
            covers,
            rows,
            bytes: 0,
        }
    }
}

impl Manifest {
    pub fn new(layers: Vec<Layer>) -> Self {
        Self {
            format: FORMAT,
            layers,
            built_at: Utc::now(),
        }
    }

    /// The table versions the whole index covers: its newest layer's.
    pub fn covers(&self) -> BTreeMap<String, u64> {
        self.layers
            .last()
            .map(|l| l.covers.clone())
            .unwrap_or_default()
    }

    pub fn rows(&self) -> u64 {
        self.layers.iter().map(|l| l.rows).sum()
    }

    pub fn bytes(&self) -> u64 {
        self.layers.iter().map(|l| l.bytes).sum()
    }

    fn generations(&self) -> impl Iterator<Item = String> + '_ {
        self.layers.iter().map(|l| l.generation.clone())
    }
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
        Ok((manifest.format == FORMAT && !manifest.layers.is_empty()).then_some(manifest))
    }

    /// A new generation's name: time first, so names sort by age.
    pub fn new_generation() -> String {
        let id = uuid::Uuid::new_v4().simple().to_string();
        format!("g{}-{}", Utc::now().timestamp_millis(), &id[..8])
    }

    /// Uploads the files of `staged` as the manifest's newest layer, then
    /// makes the manifest current. Returns it with the layer's size filled in.
    pub async fn publish(&self, staged: &FsPath, mut manifest: Manifest) -> Result<Manifest> {
        let Some(layer) = manifest.layers.last_mut() else {
            anyhow::bail!("an index with no layers cannot be published");
        };
        let folder = self.prefix.clone().join(layer.generation.as_str());
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
        layer.bytes = bytes;
        let json = serde_json::to_vec_pretty(&manifest)?;
        let previous = self.manifest().await.ok().flatten();
        self.store
            .put(
                &self.prefix.clone().join("manifest.json"),
                PutPayload::from(json),
            )
            .await
            .with_context(|| format!("cannot publish the {} index to {}", self.name, self.url))?;
        let mut keep: Vec<String> = manifest.generations().collect();
        keep.extend(previous.iter().flat_map(Manifest::generations));
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

    /// Local folders holding `manifest`'s layers, oldest first: the
    /// lake's own folders for a local lake, else cached downloads.
    pub async fn local_layers(&self, manifest: &Manifest) -> Result<Vec<PathBuf>> {
        if let Ok(path) = self.url.to_file_path() {
            return Ok(manifest.generations().map(|g| path.join(g)).collect());
        }
        // Two servers can hold the same bucket name.
        let endpoint = self.storage.s3_endpoint.as_deref().unwrap_or_default();
        let lake_key =
            hex::encode(&Sha256::digest(format!("{endpoint} {}", self.url).as_bytes())[..8]);
        let home = cache_home().join("indexes").join(lake_key);
        std::fs::create_dir_all(&home)
            .with_context(|| format!("cannot create the index cache {}", home.display()))?;
        let mut dirs = Vec::new();
        for generation in manifest.generations() {
            dirs.push(self.cached(&home, &generation).await?);
        }
        // Generations abandoned long ago are not read again; younger ones
        // may still be, by searches that started before this publish.
        let cutoff = Utc::now().timestamp_millis() - ABANDONED_AFTER_SECS * 1000;
        for entry in std::fs::read_dir(&home)?.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if !dirs.contains(&entry.path()) && born_ms(&name).is_some_and(|ms| ms < cutoff) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(dirs)
    }

    /// `generation` downloaded once into the cache folder `home`.
    async fn cached(&self, home: &FsPath, generation: &str) -> Result<PathBuf> {
        let dir = home.join(generation);
        if dir.join(".complete").exists() {
            return Ok(dir);
        }
        let part = tempfile::tempdir_in(home)?;
        let folder = self.prefix.clone().join(generation);
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
        Ok(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(generation: &str) -> Layer {
        Layer {
            generation: generation.to_string(),
            covers: [("chunks".to_string(), 3)].into(),
            rows: 2,
            bytes: 0,
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
        let first = layer(&IndexHome::new_generation());
        let published = home
            .publish(staged.path(), Manifest::new(vec![first.clone()]))
            .await
            .unwrap();
        assert_eq!(published.bytes(), 10);
        let read = home.manifest().await.unwrap().unwrap();
        assert_eq!(read.layers[0].generation, first.generation);
        let dirs = home.local_layers(&read).await.unwrap();
        assert_eq!(std::fs::read(dirs[0].join("a.idx")).unwrap(), b"0123456789");
        // Hidden files (Tantivy's locks) are not published.
        assert!(!dirs[0].join(".lock").exists());

        // A layer on top: only its files are uploaded, both are read.
        std::fs::write(staged.path().join("a.idx"), b"01234").unwrap();
        let second = layer(&IndexHome::new_generation());
        let layered = home
            .publish(
                staged.path(),
                Manifest::new(vec![published.layers[0].clone(), second.clone()]),
            )
            .await
            .unwrap();
        assert_eq!(layered.bytes(), 15);
        assert_eq!(layered.rows(), 4);
        let read = home.manifest().await.unwrap().unwrap();
        let dirs = home.local_layers(&read).await.unwrap();
        assert_eq!(dirs.len(), 2);
        assert_eq!(std::fs::read(dirs[0].join("a.idx")).unwrap(), b"0123456789");
        assert_eq!(std::fs::read(dirs[1].join("a.idx")).unwrap(), b"01234");

        // A rebuild: every generation stays, since readers may hold them.
        let third = layer(&IndexHome::new_generation());
        home.publish(staged.path(), Manifest::new(vec![third.clone()]))
            .await
            .unwrap();
        let read = home.manifest().await.unwrap().unwrap();
        assert_eq!(read.layers.len(), 1);
        assert_eq!(read.layers[0].generation, third.generation);
        for g in [&first, &second] {
            assert!(lake
                .path()
                .join("_indexes/text")
                .join(&g.generation)
                .is_dir());
        }

        // A manifest of another format is not trusted: rebuild.
        let mut old = Manifest::new(vec![third]);
        old.format = FORMAT + 1;
        std::fs::write(
            lake.path().join("_indexes/text/manifest.json"),
            serde_json::to_vec(&old).unwrap(),
        )
        .unwrap();
        assert!(home.manifest().await.unwrap().is_none());
    }
}
