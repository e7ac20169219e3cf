//! Pipeline files (TOML): source, lake, batching, limits and the SQL stages.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::extract::Limits;
use crate::models::config::{ModelsConfig, ProviderConfig};
use crate::sources::kafka::KafkaConfig;

/// The pipeline compiled into the binary, so `docstream` works from any folder.
const DEFAULT_PIPELINE: &str = include_str!("../../pipelines/default.toml");
/// SQL files the default pipeline names, by the path it names them with.
const BUILTIN_SQL: &[(&str, &str)] = &[
    (
        "../sql/stages/documents.sql",
        include_str!("../../sql/stages/documents.sql"),
    ),
    (
        "../sql/stages/chunks.sql",
        include_str!("../../sql/stages/chunks.sql"),
    ),
    (
        "../sql/stages/embeddings.sql",
        include_str!("../../sql/stages/embeddings.sql"),
    ),
    (
        "../sql/stages/summaries.sql",
        include_str!("../../sql/stages/summaries.sql"),
    ),
    (
        "../sql/stages/doc_types.sql",
        include_str!("../../sql/stages/doc_types.sql"),
    ),
    (
        "../sql/stages/risks.sql",
        include_str!("../../sql/stages/risks.sql"),
    ),
    (
        "../sql/stages/action_items.sql",
        include_str!("../../sql/stages/action_items.sql"),
    ),
];

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
    pub stages: Vec<StageConfig>,
    /// Folder of the pipeline file, which relative paths start from;
    /// `None` for the built-in pipeline.
    #[serde(skip)]
    pub base: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalyticsConfig {
    /// Providers that embed queries. Default: the `embeddings` table's stage's.
    pub embed_providers: Vec<String>,
    /// Providers that answer `ask`. Default: the `summaries` table's stage's.
    pub answer_providers: Vec<String>,
    /// Folder of report SQL files (relative to the pipeline file); they are
    /// added to the built-in reports, replacing any of the same name.
    pub reports: Option<String>,
    /// `ask` shows the model only chunks at least this cosine-similar to
    /// the question. Depends on the embedding model: with MiniLM, related
    /// questions score 0.3 and up, unrelated ones about 0.1.
    pub min_similarity: f32,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        Self {
            embed_providers: Vec::new(),
            answer_providers: Vec::new(),
            reports: None,
            min_similarity: 0.25,
        }
    }
}

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

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LakeConfig {
    pub uri: String,
    /// Tables docstream creates write a Delta checkpoint every N commits.
    pub checkpoint_interval: u64,
    /// `ingest` compacts a table's small files every N of its commits, in
    /// the background (0 = never; run `docstream optimize` instead).
    pub compact_every_commits: u64,
}

impl Default for LakeConfig {
    fn default() -> Self {
        Self {
            uri: "lake".into(),
            checkpoint_interval: 100,
            compact_every_commits: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    pub max_rows: usize,
    pub max_bytes: usize,
    pub max_age_secs: f64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_rows: 2000,
            max_bytes: 64 << 20,
            max_age_secs: 30.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    pub name: String,
    /// Path of the SQL file, relative to the pipeline file.
    #[serde(default)]
    pub sql: Option<String>,
    /// Inline SQL instead of a file.
    #[serde(default)]
    pub query: Option<String>,
    /// Delta table the stage's rows land in.
    pub table: String,
    /// Providers the stage's model UDFs call, in fallback order.
    #[serde(default)]
    pub providers: Vec<String>,
    #[serde(default)]
    pub params: BTreeMap<String, toml::Value>,
}

/// A stage with its SQL loaded and parameters substituted.
#[derive(Debug, Clone)]
pub struct Stage {
    pub name: String,
    pub table: String,
    pub sql: String,
    pub providers: Vec<String>,
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
            pipeline.set_param(assignment)?;
        }
        let stages = pipeline.resolve_stages(base.as_deref())?;
        pipeline.base = base;
        Ok((pipeline, stages))
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

    fn set_param(&mut self, assignment: &str) -> Result<()> {
        let Some((key, value)) = assignment.split_once('=') else {
            bail!("--set expects STAGE.PARAM=VALUE, got '{assignment}'");
        };
        let Some((stage, param)) = key.trim().split_once('.') else {
            bail!("--set expects STAGE.PARAM=VALUE, got '{assignment}'");
        };
        let names: Vec<String> = self.stages.iter().map(|s| s.name.clone()).collect();
        let Some(stage) = self.stages.iter_mut().find(|s| s.name == stage) else {
            bail!(
                "--set: no stage named '{stage}'; stages are: {}",
                names.join(", ")
            );
        };
        let value = value.trim();
        let parsed = value
            .parse::<i64>()
            .map(toml::Value::Integer)
            .or_else(|_| value.parse::<f64>().map(toml::Value::Float))
            .unwrap_or_else(|_| toml::Value::String(value.to_string()));
        stage.params.insert(param.to_string(), parsed);
        Ok(())
    }

    fn resolve_stages(&self, base: Option<&Path>) -> Result<Vec<Stage>> {
        if self.stages.is_empty() {
            bail!("the pipeline has no [[stages]]");
        }
        self.stages
            .iter()
            .map(|s| {
                let template = match (&s.sql, &s.query) {
                    (Some(_), Some(_)) => bail!("stage '{}' sets both sql and query", s.name),
                    (None, None) => bail!(
                        "stage '{}' needs sql = \"file.sql\" or query = \"SELECT ...\"",
                        s.name
                    ),
                    (None, Some(q)) => q.clone(),
                    (Some(file), None) => {
                        load_sql(file, base).with_context(|| format!("stage '{}'", s.name))?
                    }
                };
                // `${model}` defaults to the first provider's model id.
                let mut params = s.params.clone();
                if let Some(p) = s.providers.first().and_then(|p| self.providers.get(p)) {
                    params
                        .entry("model".into())
                        .or_insert_with(|| toml::Value::String(p.model.clone()));
                }
                Ok(Stage {
                    name: s.name.clone(),
                    table: s.table.clone(),
                    sql: substitute(&template, &params)
                        .with_context(|| format!("stage '{}'", s.name))?,
                    providers: s.providers.clone(),
                })
            })
            .collect()
    }
}

/// Keeps only the stages named in `only` (all when empty), in pipeline order.
pub fn select_stages(stages: Vec<Stage>, only: &[String]) -> Result<Vec<Stage>> {
    if only.is_empty() {
        return Ok(stages);
    }
    if let Some(unknown) = only.iter().find(|n| !stages.iter().any(|s| &s.name == *n)) {
        let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
        bail!(
            "--stages: no stage named '{unknown}'; stages are: {}",
            names.join(", ")
        );
    }
    Ok(stages
        .into_iter()
        .filter(|s| only.contains(&s.name))
        .collect())
}

fn load_sql(file: &str, base: Option<&Path>) -> Result<String> {
    match base {
        Some(dir) => {
            let path: PathBuf = dir.join(file);
            std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read SQL file {}", path.display()))
        }
        None => BUILTIN_SQL
            .iter()
            .find(|(name, _)| *name == file)
            .map(|(_, sql)| sql.to_string())
            .with_context(|| format!("no built-in SQL file {file}")),
    }
}

/// Replaces `${name}` with the parameter's value. Strings are substituted
/// as-is inside the SQL's own quotes, so quotes in values are rejected.
fn substitute(template: &str, params: &BTreeMap<String, toml::Value>) -> Result<String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            bail!("unclosed ${{ in SQL");
        };
        let name = &after[..end];
        let value = match params.get(name) {
            Some(toml::Value::String(s)) if s.contains(['\'', '"', ';']) => {
                bail!("parameter {name} may not contain quotes or semicolons")
            }
            Some(toml::Value::String(s)) => s.clone(),
            Some(toml::Value::Integer(i)) => i.to_string(),
            Some(toml::Value::Float(f)) => f.to_string(),
            Some(toml::Value::Boolean(b)) => b.to_string(),
            Some(other) => bail!("parameter {name} has unsupported type {}", other.type_str()),
            None => bail!("the SQL uses ${{{name}}} but the stage has no param '{name}'"),
        };
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
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
}
