//! A stage's fingerprint: what its output depends on, hashed. Rows carry
//! it, so a run knows which of a table's rows the current pipeline made.
//!
//! It covers the SQL after substitution, the parameters, each provider's
//! settings that change answers (kind, model, dims, context, output cap,
//! long-input rule), the prompt version of each model function the SQL
//! calls, the version of each docstream function it calls, and the
//! fingerprints of the stages it reads. Endpoints, keys, timeouts and
//! concurrency are left out: they change how a call is made, not what it
//! returns.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;

use anyhow::{Context, Result};
use deltalake::datafusion::sql::parser::{DFParser, Statement};
use deltalake::datafusion::sql::resolve::resolve_table_references;
use deltalake::datafusion::sql::sqlparser::ast::{visit_expressions, Expr};
use docstream_models::provider::ProviderConfig;
use docstream_models::tasks::Task;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Hex digits kept of the sha256: 64 bits, so two fingerprints of one
/// stage never collide in practice, and rows stay small.
const DIGITS: usize = 16;

/// The versions of docstream's functions whose output a stage can store.
/// Bump one when the same input starts giving a different output: every
/// stage that calls it becomes stale.
const FUNCTION_VERSIONS: &[(&str, &str)] = &[
    ("chunk_text", "1"),
    ("count_tokens", "1"),
    ("redact_pii", "1"),
];

/// The prompt version behind each model function (part of the model
/// cache's key too). `classify_document`'s labels are in the SQL.
fn prompt_version(function: &str) -> Option<String> {
    let task = match function {
        "summarize" => Task::Summary,
        "extract_risks" => Task::Risks,
        "extract_action_items" => Task::ActionItems,
        "classify_document" => Task::Classify(Vec::new()),
        "embed" => return Some("embedding".into()),
        _ => return None,
    };
    Some(task.prompt_version())
}

/// What a stage's SQL refers to.
#[derive(Debug, Default, PartialEq)]
pub struct References {
    /// Tables it reads (CTEs excluded), lowercased.
    pub tables: BTreeSet<String>,
    /// Functions it calls, lowercased.
    pub functions: BTreeSet<String>,
}

/// Parses `sql` for the tables it reads and the functions it calls.
pub fn references(sql: &str) -> Result<References> {
    let mut statements = DFParser::parse_sql(sql).context("cannot parse the stage's SQL")?;
    let statement = statements
        .pop_front()
        .context("the stage's SQL holds no statement")?;
    let (tables, _) = resolve_table_references(&statement, true)?;
    let mut refs = References {
        tables: tables.iter().map(|t| t.table().to_lowercase()).collect(),
        functions: BTreeSet::new(),
    };
    if let Statement::Statement(s) = &statement {
        let _ = visit_expressions(s.as_ref(), |e: &Expr| {
            if let Expr::Function(f) = e {
                refs.functions.insert(f.name.to_string().to_lowercase());
            }
            ControlFlow::<()>::Continue(())
        });
    }
    Ok(refs)
}

/// What one stage's fingerprint is made of, before hashing.
pub struct Parts<'a> {
    pub name: &'a str,
    pub table: &'a str,
    pub sql: &'a str,
    pub params: &'a BTreeMap<String, toml::Value>,
    pub providers: Vec<&'a ProviderConfig>,
    pub references: &'a References,
    /// The fingerprints of the earlier stages it reads, by name.
    pub inputs: BTreeMap<&'a str, &'a str>,
}

impl Parts<'_> {
    /// The canonical description that is hashed; `docstream plan --format
    /// json` shows it, so a user can see why a stage became stale.
    pub fn describe(&self) -> Value {
        // An embedding width changes vectors only, not a chat model's answers.
        let embeds = self.references.functions.contains("embed");
        let providers: Vec<Value> = self
            .providers
            .iter()
            .map(|p| {
                json!({
                    "kind": format!("{:?}", p.kind).to_lowercase(),
                    "model": p.model,
                    "dims": p.dims.filter(|_| embeds),
                    "context_tokens": p.context_tokens,
                    "max_output_tokens": p.max_output_tokens,
                    "long_input": format!("{:?}", p.long_input).to_lowercase(),
                    "json_schema": p.json_schema,
                })
            })
            .collect();
        let prompts: BTreeMap<&str, String> = self
            .references
            .functions
            .iter()
            .filter_map(|f| prompt_version(f).map(|v| (f.as_str(), v)))
            .collect();
        let functions: BTreeMap<&str, &str> = FUNCTION_VERSIONS
            .iter()
            .filter(|(f, _)| self.references.functions.contains(*f))
            .map(|(f, v)| (*f, *v))
            .collect();
        let params: BTreeMap<&str, String> = self
            .params
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_string()))
            .collect();
        json!({
            "stage": self.name,
            "table": self.table,
            "sql": self.sql,
            "params": params,
            "providers": providers,
            "prompts": prompts,
            "functions": functions,
            "inputs": self.inputs,
        })
    }

    pub fn hash(&self) -> String {
        let digest = Sha256::digest(self.describe().to_string().as_bytes());
        hex::encode(digest)[..DIGITS].to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts<'a>(
        sql: &'a str,
        refs: &'a References,
        params: &'a BTreeMap<String, toml::Value>,
    ) -> Parts<'a> {
        Parts {
            name: "s",
            table: "t",
            sql,
            params,
            providers: Vec::new(),
            references: refs,
            inputs: BTreeMap::new(),
        }
    }

    #[test]
    fn references_list_tables_and_functions_but_not_ctes() {
        let refs = references(
            "WITH c AS (SELECT * FROM chunks) SELECT doc_id, embed(redact_pii(text)) FROM c JOIN extracted USING (doc_id)",
        )
        .unwrap();
        assert_eq!(
            refs.tables.iter().collect::<Vec<_>>(),
            ["chunks", "extracted"]
        );
        assert!(refs.functions.contains("embed"));
        assert!(refs.functions.contains("redact_pii"));
    }

    #[test]
    fn the_hash_changes_with_sql_params_inputs_and_function_versions() {
        let params = BTreeMap::new();
        let sql = "SELECT chunk_text(text, 512, 64) FROM extracted";
        let refs = references(sql).unwrap();
        let base = parts(sql, &refs, &params).hash();
        assert_eq!(base.len(), DIGITS);
        assert_eq!(base, parts(sql, &refs, &params).hash(), "stable");

        let other_sql = "SELECT chunk_text(text, 256, 64) FROM extracted";
        assert_ne!(base, parts(other_sql, &refs, &params).hash());

        let mut more = BTreeMap::new();
        more.insert("max_tokens".to_string(), toml::Value::Integer(512));
        assert_ne!(base, parts(sql, &refs, &more).hash());

        let mut with_input = parts(sql, &refs, &params);
        with_input.inputs.insert("chunks", "0123");
        assert_ne!(base, with_input.hash());

        // chunk_text's version is part of it; a plain function's is not.
        let plain = "SELECT upper(text) FROM extracted";
        let plain_refs = references(plain).unwrap();
        let described = parts(plain, &plain_refs, &params).describe();
        assert_eq!(described["functions"], json!({}));
        assert_eq!(
            parts(sql, &refs, &params).describe()["functions"],
            json!({"chunk_text": "1"})
        );
    }

    #[test]
    fn model_functions_bring_their_prompt_versions() {
        let sql = "SELECT summarize(redact_pii(text)) FROM extracted";
        let refs = references(sql).unwrap();
        let params = BTreeMap::new();
        let described = parts(sql, &refs, &params).describe();
        assert_eq!(described["prompts"]["summarize"], "summary-v1");
    }
}
