//! `embed_query('text')`: the query's own vector, from the pipeline's
//! embedding provider.
//!
//! Before a plan runs, every constant text passed to `embed_query` in it
//! is embedded, all in one call, and the function then returns that vector
//! as a constant (which the optimizer folds). So a scan over a million
//! embeddings compares against one vector, embedded once per query.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Result};
use deltalake::arrow::array::FixedSizeListArray;
use deltalake::arrow::datatypes::{DataType, Field, Float32Type};
use deltalake::datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use deltalake::datafusion::common::{exec_err, ScalarValue};
use deltalake::datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use deltalake::datafusion::prelude::SessionContext;

use docstream_models::chain::ModelChain;

pub const NAME: &str = "embed_query";

/// Vectors of the texts embedded so far, by text.
#[derive(Debug, Default, Clone)]
pub struct Resolved(Arc<Mutex<HashMap<String, ScalarValue>>>);

impl Resolved {
    fn get(&self, text: &str) -> Option<ScalarValue> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(text)
            .cloned()
    }

    fn insert(&self, text: String, vector: ScalarValue) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(text, vector);
    }
}

/// Registers `embed_query`, answering from `resolved`; `dims` is the
/// provider's vector size.
pub fn register(ctx: &SessionContext, dims: usize, resolved: Resolved) {
    ctx.register_udf(ScalarUDF::new_from_impl(EmbedQuery {
        dims,
        resolved,
        signature: Signature::string(1, Volatility::Immutable),
    }));
}

fn vector_type(dims: usize) -> DataType {
    DataType::FixedSizeList(
        Arc::new(Field::new_list_field(DataType::Float32, true)),
        dims as i32,
    )
}

#[derive(Debug)]
struct EmbedQuery {
    dims: usize,
    resolved: Resolved,
    signature: Signature,
}

impl PartialEq for EmbedQuery {
    fn eq(&self, other: &Self) -> bool {
        self.dims == other.dims && Arc::ptr_eq(&self.resolved.0, &other.resolved.0)
    }
}

impl Eq for EmbedQuery {}

impl std::hash::Hash for EmbedQuery {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.dims.hash(state);
    }
}

impl ScalarUDFImpl for EmbedQuery {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(
        &self,
        _arg_types: &[DataType],
    ) -> deltalake::datafusion::common::Result<DataType> {
        Ok(vector_type(self.dims))
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> deltalake::datafusion::common::Result<ColumnarValue> {
        let text = match &args.args[0] {
            ColumnarValue::Scalar(
                ScalarValue::Utf8(Some(t))
                | ScalarValue::LargeUtf8(Some(t))
                | ScalarValue::Utf8View(Some(t)),
            ) => t,
            _ => return exec_err!("embed_query takes one constant text, e.g. embed_query('vendor delay'); to embed a column, use a pipeline stage"),
        };
        match self.resolved.get(text) {
            Some(v) => Ok(ColumnarValue::Scalar(v)),
            None => exec_err!("embed_query('{text}') was not embedded before the query ran"),
        }
    }
}

/// The vectors of `texts`, embedded by `chain` in one call.
pub async fn embed_texts(chain: &ModelChain, texts: &[String]) -> Result<Vec<Vec<f32>>> {
    let inputs: Vec<Option<&str>> = texts.iter().map(|t| Some(t.as_str())).collect();
    texts
        .iter()
        .zip(chain.embed(&inputs).await)
        .map(|(text, result)| {
            result
                .ok_or_else(|| anyhow!("no embedding for '{text}'"))?
                .map_err(|f| anyhow!("cannot embed the query '{text}': {f}"))
        })
        .collect()
}

/// The constant text of an `embed_query(...)` call, if `expr` is one.
pub fn query_text(expr: &Expr) -> Option<&str> {
    let Expr::ScalarFunction(f) = expr else {
        return None;
    };
    if f.name() != NAME {
        return None;
    }
    match f.args.as_slice() {
        [Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
            _,
        )] => Some(s.as_str()),
        _ => None,
    }
}

/// The constant texts `plan` passes to `embed_query`.
pub fn texts(plan: &LogicalPlan) -> Vec<String> {
    let mut found = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                if let Some(t) = query_text(e) {
                    if !found.iter().any(|f| f == t) {
                        found.push(t.to_string());
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    found
}

/// Embeds every constant `embed_query` text in `plan` not embedded yet,
/// with `chain`, in one call.
pub async fn resolve(plan: &LogicalPlan, chain: &ModelChain, resolved: &Resolved) -> Result<()> {
    let texts: Vec<String> = texts(plan)
        .into_iter()
        .filter(|t| resolved.get(t).is_none())
        .collect();
    if texts.is_empty() {
        return Ok(());
    }
    for (text, vector) in texts.iter().zip(embed_texts(chain, &texts).await?) {
        let array = FixedSizeListArray::from_iter_primitive::<Float32Type, _, _>(
            [Some(vector.iter().copied().map(Some).collect::<Vec<_>>())],
            vector.len() as i32,
        );
        resolved.insert(text.clone(), ScalarValue::FixedSizeList(Arc::new(array)));
    }
    Ok(())
}
