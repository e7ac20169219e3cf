//! DataFusion async UDFs over a stage's model chain. Each call gets a whole
//! column, so the chain batches requests across rows.
//!
//! A row the model fails on makes the call fail after every other row is
//! cached; the runner then re-runs the stage document by document, where
//! good rows come from the cache and the bad one becomes a `failures` row.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use async_trait::async_trait;
use deltalake::arrow::array::{ArrayRef, AsArray, FixedSizeListArray, Float32Array, RecordBatch};
use deltalake::arrow::buffer::NullBuffer;
use deltalake::arrow::datatypes::{DataType, Field, Fields, Schema};
use deltalake::arrow::json::reader::ReaderBuilder;
use deltalake::datafusion::common::{exec_err, DataFusionError, Result, ScalarValue};
use deltalake::datafusion::logical_expr::async_udf::{AsyncScalarUDF, AsyncScalarUDFImpl};
use deltalake::datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use deltalake::datafusion::prelude::SessionContext;
use docstream_models::chain::{Generated, ModelChain, RowResult};
use docstream_models::error::ModelFailure;
use docstream_models::tasks::Task;
use serde_json::{json, Value};

use super::text::to_array;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Embed,
    Summarize,
    Risks,
    ActionItems,
    Classify,
}

const ALL: [Kind; 5] = [
    Kind::Embed,
    Kind::Summarize,
    Kind::Risks,
    Kind::ActionItems,
    Kind::Classify,
];

/// Registers `embed`, `summarize`, `extract_risks`, `extract_action_items`
/// and `classify_document`, bound to `chain`.
pub fn register(ctx: &SessionContext, chain: &Arc<ModelChain>) {
    for kind in ALL {
        // Plain string signatures: the async wrapper does not forward coerce_types.
        let args = if kind == Kind::Classify { 2 } else { 1 };
        let udf = ModelUdf {
            kind,
            chain: chain.clone(),
            signature: Signature::string(args, Volatility::Volatile),
        };
        ctx.register_udf(AsyncScalarUDF::new(Arc::new(udf)).into_scalar_udf());
    }
}

struct ModelUdf {
    kind: Kind,
    chain: Arc<ModelChain>,
    signature: Signature,
}

impl std::fmt::Debug for ModelUdf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}({})", self.name(), self.chain.describe())
    }
}

impl PartialEq for ModelUdf {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && Arc::ptr_eq(&self.chain, &other.chain)
    }
}

impl Eq for ModelUdf {}

impl Hash for ModelUdf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
        self.chain.describe().hash(state);
    }
}

fn text(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(item, true)))
}

impl ScalarUDFImpl for ModelUdf {
    fn name(&self) -> &str {
        match self.kind {
            Kind::Embed => "embed",
            Kind::Summarize => "summarize",
            Kind::Risks => "extract_risks",
            Kind::ActionItems => "extract_action_items",
            Kind::Classify => "classify_document",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.kind {
            Kind::Embed => {
                let dims = self.chain.embedding_dims().map_err(DataFusionError::Plan)?;
                DataType::FixedSizeList(
                    Arc::new(Field::new_list_field(DataType::Float32, true)),
                    dims as i32,
                )
            }
            Kind::Summarize => DataType::Struct(Fields::from(vec![
                text("summary"),
                Field::new("key_points", list_of(DataType::Utf8), true),
                text("model"),
                text("prompt_version"),
            ])),
            Kind::Risks => list_of(DataType::Struct(Fields::from(
                [
                    "title",
                    "description",
                    "category",
                    "severity",
                    "likelihood",
                    "mitigation",
                    "owner",
                    "evidence",
                    "model",
                ]
                .map(text)
                .to_vec(),
            ))),
            Kind::ActionItems => list_of(DataType::Struct(Fields::from(
                ["task", "owner", "due_date", "priority", "evidence", "model"]
                    .map(text)
                    .to_vec(),
            ))),
            Kind::Classify => DataType::Struct(Fields::from(vec![
                text("doc_type"),
                Field::new("confidence", DataType::Float64, true),
            ])),
        })
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        exec_err!(
            "{} is async and runs through the async executor",
            self.name()
        )
    }
}

#[async_trait]
impl AsyncScalarUDFImpl for ModelUdf {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let column = to_array(&args.args[0], rows, &DataType::Utf8)?;
        let texts: Vec<Option<&str>> = column.as_string::<i32>().iter().collect();
        let return_type = args.return_field.data_type().clone();
        let array = match self.kind {
            Kind::Embed => {
                let vectors = self.chain.embed(&texts).await;
                embeddings_array(vectors, &return_type)?
            }
            kind => {
                let task = match kind {
                    Kind::Summarize => Task::Summary,
                    Kind::Risks => Task::Risks,
                    Kind::ActionItems => Task::ActionItems,
                    _ => Task::Classify(labels(args.args.get(1))?),
                };
                let results = self.chain.generate(&task, &texts).await;
                if let Some(f) = rejection(results.iter().flatten()) {
                    return Err(external(f));
                }
                let values = results
                    .into_iter()
                    .map(|r| r.map(|r| r.map(|g| shape(&task, g))).transpose())
                    .collect::<RowResult<Vec<Option<Value>>>>()
                    .map_err(external)?;
                json_array(values, &return_type)?
            }
        };
        Ok(ColumnarValue::Array(array))
    }
}

fn external(f: ModelFailure) -> DataFusionError {
    DataFusionError::External(Box::new(f))
}

/// When rows failed for different reasons, a rejection names the batch's
/// failure: retrying never fixes it, so it is the cause worth reporting.
fn rejection<'a, T: 'a>(rows: impl IntoIterator<Item = &'a RowResult<T>>) -> Option<ModelFailure> {
    rows.into_iter()
        .find_map(|r| r.as_ref().err().filter(|f| f.error.is_rejection()).cloned())
}

/// The label set: a constant, comma-separated string argument.
fn labels(arg: Option<&ColumnarValue>) -> Result<Vec<String>> {
    let value = match arg {
        Some(ColumnarValue::Scalar(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
        )) => s.clone(),
        _ => {
            return exec_err!(
                "classify_document(text, 'label,label,...') needs a constant label list"
            )
        }
    };
    let labels: Vec<String> = value
        .split(',')
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    if labels.is_empty() {
        return exec_err!("classify_document: the label list is empty");
    }
    Ok(labels)
}

/// The model's validated JSON in the UDF's return shape.
fn shape(task: &Task, g: Generated) -> Value {
    let Generated { mut value, model } = g;
    let with_model = |items: &mut Value| {
        if let Some(items) = items.as_array_mut() {
            for item in items {
                item["model"] = json!(model);
            }
        }
    };
    match task {
        Task::Summary => {
            value["model"] = json!(model);
            value["prompt_version"] = json!(task.prompt_version());
            value
        }
        Task::Risks => {
            let mut items = value["risks"].take();
            with_model(&mut items);
            items
        }
        Task::ActionItems => {
            let mut items = value["action_items"].take();
            with_model(&mut items);
            items
        }
        Task::Classify(_) | Task::Answer => value,
    }
}

fn embeddings_array(vectors: Vec<Option<RowResult<Vec<f32>>>>, ty: &DataType) -> Result<ArrayRef> {
    let DataType::FixedSizeList(field, dims) = ty else {
        return exec_err!("embed: unexpected return type {ty}");
    };
    if let Some(f) = rejection(vectors.iter().flatten()) {
        return Err(external(f));
    }
    let dims = *dims as usize;
    let mut values = Vec::with_capacity(vectors.len() * dims);
    let mut valid = Vec::with_capacity(vectors.len());
    for v in vectors {
        match v.transpose().map_err(external)? {
            Some(v) if v.len() == dims => {
                values.extend_from_slice(&v);
                valid.push(true);
            }
            Some(v) => return exec_err!("embed: got {} dims, expected {dims}", v.len()),
            None => {
                values.extend(std::iter::repeat_n(0.0, dims));
                valid.push(false);
            }
        }
    }
    let array = FixedSizeListArray::try_new(
        field.clone(),
        dims as i32,
        Arc::new(Float32Array::from(values)),
        Some(NullBuffer::from(valid)),
    )?;
    Ok(Arc::new(array))
}

/// Decodes JSON values into an Arrow array of `ty`; `None` becomes NULL.
fn json_array(values: Vec<Option<Value>>, ty: &DataType) -> Result<ArrayRef> {
    let schema = Arc::new(Schema::new(vec![Field::new("v", ty.clone(), true)]));
    let rows: Vec<Value> = values.into_iter().map(|v| json!({ "v": v })).collect();
    let mut decoder = ReaderBuilder::new(schema.clone())
        .with_batch_size(rows.len().max(1))
        .build_decoder()?;
    decoder.serialize(&rows)?;
    let batch = decoder
        .flush()?
        .unwrap_or_else(|| RecordBatch::new_empty(schema));
    Ok(batch.column(0).clone())
}
