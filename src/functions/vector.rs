//! `cosine_similarity`, `dot_product` and `l2_distance` over vector columns
//! (`list<float>` as stored, `fixed_size_list<float>` as `embed` returns).
//!
//! The kernels read the Arrow value buffers directly: one slice per row, no
//! per-row allocation, and a constant argument (the usual
//! `embed_query('...')`) is neither copied per row nor re-normed per row.
//! Results are NULL where an input vector is NULL, contains a NULL, or, for
//! cosine, has zero length (the angle is undefined).

use std::sync::Arc;

use deltalake::arrow::array::{Array, ArrayRef, AsArray, Float32Array};
use deltalake::arrow::buffer::NullBuffer;
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Field};
use deltalake::datafusion::common::{exec_err, plan_err, Result};
use deltalake::datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use deltalake::datafusion::prelude::SessionContext;

/// Registers the three vector functions on `ctx`.
pub fn register(ctx: &SessionContext) {
    for metric in [Metric::Cosine, Metric::Dot, Metric::L2] {
        ctx.register_udf(ScalarUDF::new_from_impl(VectorFn::new(metric)));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    Cosine,
    Dot,
    L2,
}

impl Metric {
    fn name(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine_similarity",
            Metric::Dot => "dot_product",
            Metric::L2 => "l2_distance",
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct VectorFn {
    metric: Metric,
    signature: Signature,
}

impl VectorFn {
    fn new(metric: Metric) -> Self {
        Self {
            metric,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for VectorFn {
    fn name(&self) -> &str {
        self.metric.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 2 {
            return plan_err!("{}(a, b) takes two vectors", self.name());
        }
        arg_types
            .iter()
            .map(|t| match float32_vector_type(t) {
                Some(t) => Ok(t),
                None => plan_err!(
                    "{}: expected a list of numbers (e.g. the embedding column or embed_query('...')), got {t}",
                    self.name()
                ),
            })
            .collect()
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let a = Vectors::from_arg(&args.args[0])?;
        let b = Vectors::from_arg(&args.args[1])?;
        let out = compute(self.metric, &a, &b, args.number_rows)?;
        let all_scalar = a.broadcast && b.broadcast;
        let out: ArrayRef = Arc::new(out);
        Ok(if all_scalar {
            ColumnarValue::Scalar(deltalake::datafusion::common::ScalarValue::try_from_array(
                &out, 0,
            )?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}

/// The same list shape with `Float32` items, or `None` for a non-list.
fn float32_vector_type(t: &DataType) -> Option<DataType> {
    let item = || Arc::new(Field::new_list_field(DataType::Float32, true));
    match t {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _)
            if !f.data_type().is_numeric() =>
        {
            None
        }
        DataType::List(_) => Some(DataType::List(item())),
        DataType::LargeList(_) => Some(DataType::LargeList(item())),
        DataType::FixedSizeList(_, n) => Some(DataType::FixedSizeList(item(), *n)),
        DataType::Null => Some(DataType::List(item())),
        _ => None,
    }
}

/// Row boundaries of a vector column.
enum Bounds {
    Offsets(Vec<usize>),
    Fixed(usize),
}

/// A vector column (or one constant vector, `broadcast`) over its buffers.
pub struct Vectors {
    /// Keeps the buffers alive.
    _array: ArrayRef,
    values: Float32Array,
    bounds: Bounds,
    nulls: Option<NullBuffer>,
    broadcast: bool,
}

impl Vectors {
    fn from_arg(arg: &ColumnarValue) -> Result<Self> {
        match arg {
            ColumnarValue::Array(a) => Self::new(a.clone(), false),
            ColumnarValue::Scalar(s) => Self::new(s.to_array_of_size(1)?, true),
        }
    }

    pub fn new(array: ArrayRef, broadcast: bool) -> Result<Self> {
        let (values, bounds) = match array.data_type() {
            DataType::List(_) => {
                let list = array.as_list::<i32>();
                let offsets = list.value_offsets().iter().map(|&o| o as usize).collect();
                (list.values().clone(), Bounds::Offsets(offsets))
            }
            DataType::LargeList(_) => {
                let list = array.as_list::<i64>();
                let offsets = list.value_offsets().iter().map(|&o| o as usize).collect();
                (list.values().clone(), Bounds::Offsets(offsets))
            }
            DataType::FixedSizeList(_, n) => {
                let list = array.as_fixed_size_list();
                (list.values().clone(), Bounds::Fixed(*n as usize))
            }
            DataType::Null => (
                Arc::new(Float32Array::from(Vec::<f32>::new())) as ArrayRef,
                Bounds::Fixed(0),
            ),
            other => return exec_err!("expected a vector column, got {other}"),
        };
        let values = match values.data_type() {
            DataType::Float32 => values,
            _ => cast(&values, &DataType::Float32)?,
        };
        let nulls = if array.data_type() == &DataType::Null {
            Some(NullBuffer::new_null(array.len()))
        } else {
            array.logical_nulls()
        };
        Ok(Self {
            values: values.as_primitive().clone(),
            nulls,
            bounds,
            broadcast,
            _array: array,
        })
    }

    /// Row `i`'s vector; `None` when it is NULL or holds a NULL.
    fn get(&self, i: usize) -> Option<&[f32]> {
        let i = if self.broadcast { 0 } else { i };
        if self.nulls.as_ref().is_some_and(|n| n.is_null(i)) {
            return None;
        }
        let (start, end) = match &self.bounds {
            Bounds::Offsets(o) => (o[i], o[i + 1]),
            Bounds::Fixed(n) => (i * n, (i + 1) * n),
        };
        if self.values.null_count() > 0 && (start..end).any(|j| self.values.is_null(j)) {
            return None;
        }
        self.values.values().get(start..end)
    }
}

/// `metric(a[i], b[i])` for every row.
pub fn compute(metric: Metric, a: &Vectors, b: &Vectors, rows: usize) -> Result<Float32Array> {
    // A constant side is normed once, not once per row.
    let const_norm = |v: &Vectors| v.broadcast.then(|| v.get(0).map(|x| dot(x, x)));
    let (a_norm, b_norm) = (const_norm(a), const_norm(b));
    let mut out = Vec::with_capacity(rows);
    for i in 0..rows {
        let (Some(x), Some(y)) = (a.get(i), b.get(i)) else {
            out.push(None);
            continue;
        };
        if x.len() != y.len() {
            return exec_err!(
                "{}: vectors of different lengths ({} and {}) in row {i}; compare vectors of one model, e.g. WHERE model = '...'",
                metric.name(),
                x.len(),
                y.len()
            );
        }
        out.push(match metric {
            Metric::Dot => Some(dot(x, y)),
            Metric::L2 => Some(squared_distance(x, y).sqrt()),
            Metric::Cosine => {
                let xx = a_norm.flatten().unwrap_or_else(|| dot(x, x));
                let yy = b_norm.flatten().unwrap_or_else(|| dot(y, y));
                let denom = (xx * yy).sqrt();
                (denom > 0.0).then(|| dot(x, y) / denom)
            }
        });
    }
    Ok(Float32Array::from(out))
}

/// Lanes summed independently, so the compiler emits SIMD multiply-adds.
const LANES: usize = 16;

/// Σ term(x[i], y[i]), in `LANES` independent partial sums.
#[inline(always)]
fn sum_lanes(x: &[f32], y: &[f32], term: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let (xc, yc) = (x.chunks_exact(LANES), y.chunks_exact(LANES));
    let tail: f32 = xc
        .remainder()
        .iter()
        .zip(yc.remainder())
        .map(|(a, b)| term(*a, *b))
        .sum();
    for (a, b) in xc.zip(yc) {
        for k in 0..LANES {
            acc[k] += term(a[k], b[k]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Σ x[i]·y[i], vectorized.
pub fn dot(x: &[f32], y: &[f32]) -> f32 {
    sum_lanes(x, y, |a, b| a * b)
}

fn squared_distance(x: &[f32], y: &[f32]) -> f32 {
    sum_lanes(x, y, |a, b| (a - b) * (a - b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{FixedSizeListArray, ListArray};
    use deltalake::arrow::datatypes::Float32Type;

    fn reference(metric: Metric, x: &[f32], y: &[f32]) -> Option<f64> {
        let d: f64 = x.iter().zip(y).map(|(a, b)| *a as f64 * *b as f64).sum();
        let nx: f64 = x.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
        let ny: f64 = y.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
        match metric {
            Metric::Dot => Some(d),
            Metric::L2 => Some(
                x.iter()
                    .zip(y)
                    .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                    .sum::<f64>()
                    .sqrt(),
            ),
            Metric::Cosine if nx == 0.0 || ny == 0.0 => None,
            Metric::Cosine => Some(d / (nx * ny)),
        }
    }

    /// Random vectors, with NULL rows, zero vectors and a NULL item mixed in.
    fn random_rows(rows: usize, dims: usize, seed: u64) -> Vec<Option<Vec<Option<f32>>>> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..rows)
            .map(|i| match i % 11 {
                3 => None,
                5 => Some(vec![Some(0.0); dims]),
                7 => Some((0..dims).map(|j| (j != 1).then(|| rng.f32())).collect()),
                _ => Some((0..dims).map(|_| Some(rng.f32() * 2.0 - 1.0)).collect()),
            })
            .collect()
    }

    fn expected(
        metric: Metric,
        a: &Option<Vec<Option<f32>>>,
        b: &Option<Vec<Option<f32>>>,
    ) -> Option<f64> {
        let full = |v: &Option<Vec<Option<f32>>>| -> Option<Vec<f32>> {
            v.as_ref()?.iter().copied().collect()
        };
        reference(metric, &full(a)?, &full(b)?)
    }

    fn check(metric: Metric, got: &Float32Array, want: &[Option<f64>]) {
        assert_eq!(got.len(), want.len());
        for (i, w) in want.iter().enumerate() {
            match w {
                None => assert!(got.is_null(i), "{metric:?} row {i}: expected NULL"),
                Some(w) => {
                    assert!(got.is_valid(i), "{metric:?} row {i}: expected {w}");
                    let g = got.value(i) as f64;
                    assert!(
                        (g - w).abs() <= 1e-4 * w.abs().max(1.0),
                        "{metric:?} row {i}: {g} vs {w}"
                    );
                }
            }
        }
    }

    #[test]
    fn columns_match_the_reference() {
        // 37 dims: exercises the SIMD lanes and the tail.
        let (rows, dims) = (200, 37);
        let a = random_rows(rows, dims, 1);
        let b = random_rows(rows, dims, 2);
        let list = |v: &[Option<Vec<Option<f32>>>]| -> ArrayRef {
            Arc::new(ListArray::from_iter_primitive::<Float32Type, _, _>(
                v.to_vec(),
            ))
        };
        let fixed = |v: &[Option<Vec<Option<f32>>>]| -> ArrayRef {
            Arc::new(
                FixedSizeListArray::from_iter_primitive::<Float32Type, _, _>(
                    v.to_vec(),
                    dims as i32,
                ),
            )
        };
        for metric in [Metric::Cosine, Metric::Dot, Metric::L2] {
            let want: Vec<Option<f64>> = a
                .iter()
                .zip(&b)
                .map(|(x, y)| expected(metric, x, y))
                .collect();
            for (x, y) in [
                (list(&a), list(&b)),
                (fixed(&a), fixed(&b)),
                (list(&a), fixed(&b)),
            ] {
                let got = compute(
                    metric,
                    &Vectors::new(x, false).unwrap(),
                    &Vectors::new(y, false).unwrap(),
                    rows,
                )
                .unwrap();
                check(metric, &got, &want);
            }
        }
    }

    #[test]
    fn a_constant_side_is_broadcast() {
        let (rows, dims) = (50, 384);
        let a = random_rows(rows, dims, 3);
        let q: Vec<Option<f32>> = (0..dims).map(|i| Some((i as f32).sin())).collect();
        let column: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Float32Type, _, _>(
            a.clone(),
        ));
        let constant: ArrayRef = Arc::new(FixedSizeListArray::from_iter_primitive::<
            Float32Type,
            _,
            _,
        >([Some(q.clone())], dims as i32));
        for metric in [Metric::Cosine, Metric::Dot, Metric::L2] {
            let got = compute(
                metric,
                &Vectors::new(column.clone(), false).unwrap(),
                &Vectors::new(constant.clone(), true).unwrap(),
                rows,
            )
            .unwrap();
            let want: Vec<Option<f64>> = a
                .iter()
                .map(|x| expected(metric, x, &Some(q.clone())))
                .collect();
            check(metric, &got, &want);
        }
    }

    #[test]
    fn different_lengths_are_an_error() {
        let a: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Float32Type, _, _>([Some(
            vec![Some(1.0), Some(2.0)],
        )]));
        let b: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Float32Type, _, _>([Some(
            vec![Some(1.0)],
        )]));
        let err = compute(
            Metric::Dot,
            &Vectors::new(a, false).unwrap(),
            &Vectors::new(b, false).unwrap(),
            1,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("different lengths (2 and 1)"), "{err}");
    }
}
