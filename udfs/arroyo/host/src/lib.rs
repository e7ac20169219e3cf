//! Calls Arroyo UDF plugins the way Arroyo's worker does: dlopen the cdylib,
//! hand it Arrow arrays through the C Data Interface, and call `__run` (sync
//! UDFs) or `__start` / `__send` / `__drain_results` / `__stop_runtime`
//! (async UDFs, one row per `__send`). The tests use it to prove the plugins
//! work in Arroyo without running Arroyo.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayData, StringArray, UInt64Array};
use arrow::ffi::from_ffi;
use arroyo_udf_common::async_udf::{DrainResult, SendableFfiAsyncUdfHandle};
use arroyo_udf_common::{FfiArrays, RunResult};
use async_ffi::FfiFuture;
use libloading::Library;

type Run = unsafe extern "C-unwind" fn(FfiArrays) -> RunResult;
type Start = unsafe extern "C-unwind" fn(bool, u64, u32) -> SendableFfiAsyncUdfHandle;
type Send =
    unsafe extern "C-unwind" fn(SendableFfiAsyncUdfHandle, u64, FfiArrays) -> FfiFuture<bool>;
type Drain = unsafe extern "C-unwind" fn(SendableFfiAsyncUdfHandle) -> DrainResult;
type Stop = unsafe extern "C-unwind" fn(SendableFfiAsyncUdfHandle);

/// Where `cargo build --release` in `udfs/arroyo` put the plugin `name`:
/// beside this test binary's `deps/` folder.
pub fn plugin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let release = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in <target>/release/deps");
    release.join(format!(
        "{}{name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

fn open(name: &str) -> Library {
    let path = plugin_path(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --release --workspace` in udfs/arroyo first (.ci/run does)",
        path.display()
    );
    // SAFETY: the plugin is a Rust cdylib built from this workspace; loading it runs no initialisers.
    unsafe { Library::new(&path) }.unwrap_or_else(|e| panic!("dlopen {}: {e}", path.display()))
}

/// A sync UDF: a batch of rows in, one array out.
pub struct SyncUdf {
    run: Run,
    // Last, so the symbols above never outlive the library.
    _lib: Library,
}

impl SyncUdf {
    pub fn load(name: &str) -> Self {
        let lib = open(name);
        // SAFETY: `__run` has this signature in arroyo-udf-plugin 0.2.
        let run = unsafe { *lib.get::<Run>(b"__run").expect("__run is exported") };
        Self { run, _lib: lib }
    }

    /// The UDF over `args` (one array per argument, equal lengths); `Err`
    /// when the UDF panicked, which Arroyo turns into a failed task.
    pub fn call(&self, args: Vec<ArrayData>) -> Result<ArrayData, String> {
        // SAFETY: the plugin takes ownership of the arrays and frees them.
        match unsafe { (self.run)(FfiArrays::from_vec(args)) } {
            RunResult::Ok(out) => {
                // SAFETY: a valid exported array and its schema.
                unsafe { from_ffi(out.0, &out.1) }.map_err(|e| e.to_string())
            }
            RunResult::Err => Err("the UDF panicked".into()),
        }
    }

    /// A UDF returning text, as `Option<String>` per row.
    pub fn call_strings(&self, args: Vec<ArrayData>) -> Result<Vec<Option<String>>, String> {
        Ok(strings(&self.call(args)?))
    }
}

fn strings(data: &ArrayData) -> Vec<Option<String>> {
    StringArray::from(data.clone())
        .iter()
        .map(|s| s.map(str::to_string))
        .collect()
}

/// An async UDF with its runtime started.
pub struct AsyncUdf {
    handle: SendableFfiAsyncUdfHandle,
    send: Send,
    drain: Drain,
    stop: Stop,
    _lib: Library,
}

impl AsyncUdf {
    /// Starts the UDF's runtime, as Arroyo does with the UDF's options.
    pub fn start(name: &str, timeout: Duration, allowed_in_flight: u32) -> Self {
        let lib = open(name);
        // SAFETY: these symbols have these signatures in arroyo-udf-plugin 0.2.
        let (start, send, drain, stop) = unsafe {
            (
                *lib.get::<Start>(b"__start").expect("__start is exported"),
                *lib.get::<Send>(b"__send").expect("__send is exported"),
                *lib.get::<Drain>(b"__drain_results")
                    .expect("__drain_results is exported"),
                *lib.get::<Stop>(b"__stop_runtime")
                    .expect("__stop_runtime is exported"),
            )
        };
        // SAFETY: starts a runtime thread inside the plugin; stopped in Drop.
        let handle = unsafe { start(false, timeout.as_micros() as u64, allowed_in_flight) };
        Self {
            handle,
            send,
            drain,
            stop,
            _lib: lib,
        }
    }

    /// Sends every row (one single-row array per argument) with its index as
    /// id, then drains until each has a result or `within` passes. Results
    /// arrive in any order; they are returned in row order.
    pub async fn call_rows(
        &self,
        rows: Vec<Vec<ArrayData>>,
        within: Duration,
    ) -> Result<Vec<Option<String>>, String> {
        let n = rows.len();
        for (id, args) in rows.into_iter().enumerate() {
            // SAFETY: single-row arrays, owned by the plugin from here on.
            let sent =
                unsafe { (self.send)(self.handle, id as u64, FfiArrays::from_vec(args)) }.await;
            if !sent {
                return Err("the UDF's runtime has shut down".into());
            }
        }
        let mut results: HashMap<u64, Option<String>> = HashMap::new();
        let started = Instant::now();
        while results.len() < n {
            // SAFETY: the handle is live until Drop.
            match unsafe { (self.drain)(self.handle) } {
                DrainResult::Data(arrays) => {
                    let mut v = arrays.into_vec().into_iter();
                    let (ids, values) = v
                        .next()
                        .zip(v.next())
                        .ok_or("a drain without ids and values")?;
                    let ids = UInt64Array::from(ids);
                    for (id, value) in ids.values().iter().zip(strings(&values)) {
                        if results.insert(*id, value).is_some() {
                            return Err(format!("row {id} answered twice"));
                        }
                    }
                }
                DrainResult::None => {
                    if started.elapsed() > within {
                        return Err(format!(
                            "{} of {n} rows answered within {within:?}",
                            results.len()
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                DrainResult::Error => return Err("the UDF's result lock is poisoned".into()),
            }
        }
        (0..n as u64)
            .map(|id| {
                results
                    .remove(&id)
                    .ok_or_else(|| format!("no result for row {id}"))
            })
            .collect()
    }
}

impl Drop for AsyncUdf {
    fn drop(&mut self) {
        // SAFETY: stops the runtime started in `start`, once.
        unsafe { (self.stop)(self.handle) }
    }
}

/// One argument column of text, NULL where `None`.
pub fn text_column(values: &[Option<&str>]) -> ArrayData {
    StringArray::from(values.to_vec()).into_data()
}
