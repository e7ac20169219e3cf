//! `[models]` in pipeline files; `[providers.NAME]` is
//! `docstream_models::provider::ProviderConfig`.

use std::path::PathBuf;

use serde::Deserialize;

use crate::storage::cache_home;

/// `[models]`: where weights and the response cache live.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ModelsConfig {
    /// Folder with the local weights (`docstream models fetch` fills it).
    /// Default: `$DOCSTREAM_MODELS_DIR`, else `~/.cache/docstream/models`.
    pub dir: Option<PathBuf>,
    /// Response cache file; `"off"` disables it.
    /// Default: `~/.cache/docstream/model-cache.redb`.
    pub cache: Option<String>,
}

impl ModelsConfig {
    pub fn models_dir(&self) -> PathBuf {
        self.dir
            .clone()
            .or_else(|| std::env::var_os("DOCSTREAM_MODELS_DIR").map(PathBuf::from))
            .unwrap_or_else(|| cache_home().join("models"))
    }

    pub fn cache_path(&self) -> Option<PathBuf> {
        match self.cache.as_deref() {
            Some("off") => None,
            Some(p) => Some(PathBuf::from(p)),
            None => Some(cache_home().join("model-cache.redb")),
        }
    }
}
