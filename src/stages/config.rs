//! `[[stages]]` in pipeline files: each stage's SQL, loaded and with its
//! parameters substituted, and `--set STAGE.PARAM=VALUE` overrides.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use docstream_models::provider::ProviderConfig;
use serde::Deserialize;

use super::fingerprint;

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
    /// What its output depends on, hashed (see `fingerprint`).
    pub fingerprint: String,
    /// The fingerprint's parts, for `plan` to show.
    pub described: serde_json::Value,
    /// The earlier stages whose output it reads.
    pub reads: Vec<Input>,
}

#[cfg(test)]
impl Stage {
    /// A stage writing table `name`, reading nothing, for tests of what
    /// fingerprints decide.
    pub fn named(name: &str, fingerprint: &str) -> Self {
        Self {
            name: name.into(),
            table: name.into(),
            sql: String::new(),
            providers: Vec::new(),
            fingerprint: fingerprint.into(),
            described: serde_json::Value::Null,
            reads: Vec::new(),
        }
    }
}

/// An earlier stage a stage reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub name: String,
    pub table: String,
    pub fingerprint: String,
}

/// Applies one `STAGE.PARAM=VALUE` override to the stages it names.
pub fn set_param(stages: &mut [StageConfig], assignment: &str) -> Result<()> {
    let Some((key, value)) = assignment.split_once('=') else {
        bail!("--set expects STAGE.PARAM=VALUE, got '{assignment}'");
    };
    let Some((stage, param)) = key.trim().split_once('.') else {
        bail!("--set expects STAGE.PARAM=VALUE, got '{assignment}'");
    };
    let names: Vec<String> = stages.iter().map(|s| s.name.clone()).collect();
    let Some(stage) = stages.iter_mut().find(|s| s.name == stage) else {
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

/// Loads each stage's SQL (relative to `base`, the pipeline file's folder,
/// or the built-in files when `None`) and substitutes its parameters.
/// `${model}` defaults to the stage's first provider's model id.
pub fn resolve(
    stages: &[StageConfig],
    providers: &BTreeMap<String, ProviderConfig>,
    base: Option<&Path>,
) -> Result<Vec<Stage>> {
    if stages.is_empty() {
        bail!("the pipeline has no [[stages]]");
    }
    let mut resolved: Vec<Stage> = Vec::with_capacity(stages.len());
    for s in stages {
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
        let mut params = s.params.clone();
        if let Some(p) = s.providers.first().and_then(|p| providers.get(p)) {
            params
                .entry("model".into())
                .or_insert_with(|| toml::Value::String(p.model.clone()));
        }
        let sql = substitute(&template, &params).with_context(|| format!("stage '{}'", s.name))?;
        let references =
            fingerprint::references(&sql).with_context(|| format!("stage '{}'", s.name))?;
        let inputs: BTreeMap<&str, &str> = resolved
            .iter()
            .filter(|earlier| references.tables.contains(&earlier.name.to_lowercase()))
            .map(|earlier| (earlier.name.as_str(), earlier.fingerprint.as_str()))
            .collect();
        let parts = fingerprint::Parts {
            name: &s.name,
            table: &s.table,
            sql: &sql,
            params: &s.params,
            providers: s
                .providers
                .iter()
                .filter_map(|p| providers.get(p))
                .collect(),
            references: &references,
            inputs,
        };
        let stage = Stage {
            name: s.name.clone(),
            table: s.table.clone(),
            fingerprint: parts.hash(),
            described: parts.describe(),
            reads: resolved
                .iter()
                .filter(|earlier| parts.inputs.contains_key(earlier.name.as_str()))
                .map(|earlier| Input {
                    name: earlier.name.clone(),
                    table: earlier.table.clone(),
                    fingerprint: earlier.fingerprint.clone(),
                })
                .collect(),
            sql,
            providers: s.providers.clone(),
        };
        resolved.push(stage);
    }
    Ok(resolved)
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
