//! The pipeline file (TOML): composes each component's own settings, which
//! live beside the component, and loads them with `--set` overrides applied.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use docstream_models::provider::ProviderConfig;
use serde::Deserialize;

use crate::analytics::config::AnalyticsConfig;
use crate::extract::Limits;
use crate::indexes::config::IndexesConfig;
use crate::models::config::ModelsConfig;
use crate::serve::config::ServeConfig;
use crate::sinks::lake::LakeConfig;
use crate::sources::bucket::SourceConfig;
use crate::sources::kafka_config::KafkaConfig;
use crate::stages::batcher::BatchConfig;
use crate::stages::config::{self as stage_config, Stage, StageConfig};

/// The longest duration a pipeline file may give: a day.
const MAX_SECONDS: f64 = 86_400.0;
/// An extraction process needs a few MiB to start; less is a typo.
const MIN_EXTRACT_MEMORY_MB: u64 = 16;

/// The pipeline compiled into the binary, so `docstream` works from any folder.
const DEFAULT_PIPELINE: &str = include_str!("../pipelines/default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    pub name: String,
    #[serde(default)]
    pub source: SourceConfig,
    #[serde(default)]
    pub lake: LakeConfig,
    #[serde(default)]
    pub batch: BatchConfig,
    #[serde(default)]
    pub extract: Limits,
    /// Where `ingest`, `watch` and `publish` find the broker and topic.
    #[serde(default)]
    pub kafka: KafkaConfig,
    /// Where local weights and the response cache live.
    #[serde(default)]
    pub models: ModelsConfig,
    /// Model endpoints, by the name stages use.
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Which providers `search`, `ask` and `embed_query` use, and the reports.
    #[serde(default)]
    pub analytics: AnalyticsConfig,
    /// Search indexes under `<lake>/_indexes/`.
    #[serde(default)]
    pub indexes: IndexesConfig,
    /// `docstream serve`: its upload spool and limits.
    #[serde(default)]
    pub serve: ServeConfig,
    pub stages: Vec<StageConfig>,
    /// Folder of the pipeline file, which relative paths start from;
    /// `None` for the built-in pipeline.
    #[serde(skip)]
    pub base: Option<PathBuf>,
}

impl Pipeline {
    /// Loads `path`, or the built-in default pipeline when `None`, applies
    /// `STAGE.PARAM=VALUE` overrides, and resolves the stages' SQL.
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<(Self, Vec<Stage>)> {
        let (text, base) = match path {
            Some(p) => (
                std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read pipeline file {}", p.display()))?,
                Some(p.parent().unwrap_or(Path::new(".")).to_path_buf()),
            ),
            None => (DEFAULT_PIPELINE.to_string(), None),
        };
        let what = path.map_or("the built-in pipeline".to_string(), |p| {
            p.display().to_string()
        });
        let mut pipeline: Pipeline =
            toml::from_str(&text).with_context(|| format!("invalid pipeline file {what}"))?;
        for assignment in overrides {
            stage_config::set_param(&mut pipeline.stages, assignment)?;
        }
        pipeline
            .check_limits()
            .with_context(|| format!("invalid pipeline file {what}"))?;
        let stages = stage_config::resolve(&pipeline.stages, &pipeline.providers, base.as_deref())?;
        pipeline.base = base;
        Ok((pipeline, stages))
    }

    /// Every duration in seconds is a number from 0 to a day (TOML allows
    /// `inf` and `nan`, which no timer takes), an extraction process gets
    /// room to start, and OCR languages are names Tesseract knows the form of.
    fn check_limits(&self) -> Result<()> {
        if self.extract.max_memory_mb < MIN_EXTRACT_MEMORY_MB {
            anyhow::bail!(
                "[extract] max_memory_mb = {}: give at least {MIN_EXTRACT_MEMORY_MB}",
                self.extract.max_memory_mb
            );
        }
        let languages = &self.extract.ocr_languages;
        if languages.is_empty()
            || languages
                .iter()
                .any(|l| l.is_empty() || !l.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            anyhow::bail!(
                "[extract] ocr_languages = {languages:?}: give Tesseract language codes such as [\"eng\", \"deu\"]"
            );
        }
        let mut durations = vec![
            (
                "[extract] timeout_secs".to_string(),
                self.extract.timeout_secs,
            ),
            ("[batch] max_age_secs".to_string(), self.batch.max_age_secs),
        ];
        for (name, p) in &self.providers {
            durations.push((format!("[providers.{name}] timeout_secs"), p.timeout_secs));
            durations.push((
                format!("[providers.{name}] backoff_base_secs"),
                p.backoff_base_secs,
            ));
            durations.push((
                format!("[providers.{name}] circuit_open_secs"),
                p.circuit_open_secs,
            ));
        }
        match durations
            .into_iter()
            .find(|(_, secs)| !(0.0..=MAX_SECONDS).contains(secs))
        {
            Some((name, secs)) => {
                anyhow::bail!("{name} = {secs}: give a number of seconds from 0 to {MAX_SECONDS}")
            }
            None => Ok(()),
        }
    }

    /// Providers that embed queries: `[analytics] embed_providers`, else
    /// those of the stage writing `embeddings`, so queries and chunks share
    /// one vector space.
    pub fn embed_providers(&self) -> Result<Vec<String>> {
        self.analytics_providers(
            &self.analytics.embed_providers,
            "embeddings",
            "embed_providers",
        )
    }

    /// Providers that answer questions: `[analytics] answer_providers`, else
    /// those of the stage writing `summaries`.
    pub fn answer_providers(&self) -> Result<Vec<String>> {
        self.analytics_providers(
            &self.analytics.answer_providers,
            "summaries",
            "answer_providers",
        )
    }

    fn analytics_providers(&self, set: &[String], table: &str, key: &str) -> Result<Vec<String>> {
        if !set.is_empty() {
            return Ok(set.to_vec());
        }
        self.stages
            .iter()
            .find(|s| s.table == table && !s.providers.is_empty())
            .map(|s| s.providers.clone())
            .with_context(|| {
                format!("the pipeline has no model stage writing {table}; set [analytics] {key} = [\"provider\"]")
            })
    }

    /// The folder `[analytics] reports` names, relative to the pipeline file.
    pub fn reports_dir(&self) -> Option<PathBuf> {
        let folder = self.analytics.reports.as_ref()?;
        Some(match &self.base {
            Some(base) => base.join(folder),
            None => PathBuf::from(folder),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_pipeline_loads() {
        let (p, stages) = Pipeline::load(None, &[]).unwrap();
        assert_eq!(p.name, "default");
        assert_eq!(stages.len(), 7);
        assert!(stages[1]
            .sql
            .contains("chunk_text(text, 512, 64, 'cl100k_base')"));
    }

    #[test]
    fn overrides_and_errors() {
        let set = |s: &[&str]| -> Vec<String> { s.iter().map(|x| x.to_string()).collect() };
        let (_, stages) = Pipeline::load(None, &set(&["chunks.max_tokens=128"])).unwrap();
        assert!(stages[1].sql.contains("chunk_text(text, 128, 64"));
        assert!(Pipeline::load(None, &set(&["nostage.x=1"])).is_err());
        assert!(Pipeline::load(None, &set(&["garbage"])).is_err());
        assert!(Pipeline::load(None, &set(&["chunks.encoding=x'; DROP"])).is_err());
    }

    #[test]
    fn extraction_memory_has_a_floor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        let pipeline = "name = \"p\"\nstages = []\n[extract]\nmax_memory_mb = 0\n";
        std::fs::write(&path, pipeline).unwrap();
        let err = Pipeline::load(Some(&path), &[]).unwrap_err();
        assert!(format!("{err:#}").contains("max_memory_mb"), "{err:#}");
    }

    #[test]
    fn durations_must_be_finite_seconds() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["inf", "nan", "-1.0", "1e12"] {
            let path = dir.path().join("p.toml");
            std::fs::write(
                &path,
                format!("name = \"p\"\nstages = []\n[extract]\ntimeout_secs = {bad}\n"),
            )
            .unwrap();
            let err = Pipeline::load(Some(&path), &[]).unwrap_err();
            assert!(
                format!("{err:#}").contains("timeout_secs"),
                "{bad}: {err:#}"
            );
        }
    }
}
