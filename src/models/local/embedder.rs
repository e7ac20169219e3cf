//! all-MiniLM-L6-v2 in-process: candle's BERT, mean pooling, L2 normalisation
//! (the sentence-transformers recipe the model ships with).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{Encoding, Tokenizer, TruncationParams};

/// Windows per forward pass: bounds memory whatever the request size.
const WINDOWS_PER_PASS: usize = 32;
/// Tokens shared by consecutive windows when a long input is split.
const SPLIT_STRIDE: usize = 32;

pub struct LocalEmbedder {
    model: BertModel,
    tokenizer: Tokenizer,
    dims: usize,
}

/// Vectors plus what the tokenizer saw.
pub struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    pub tokens: u64,
    pub truncated: usize,
}

/// A local embedder that loads on a background thread from the moment it
/// is opened, so a command's other start-up (opening the lake) overlaps
/// the load; the first embedding waits for it.
pub struct BackgroundEmbedder {
    loaded: Arc<OnceLock<Result<Mutex<LocalEmbedder>, String>>>,
    dir: PathBuf,
    max_tokens: usize,
    dims: usize,
}

impl BackgroundEmbedder {
    /// Checks that `dir` holds the model, then starts loading it.
    pub fn open(dir: &Path, max_tokens: usize) -> Result<Self> {
        let dims = read_config(dir)?.hidden_size;
        let weights = dir.join("model.safetensors");
        if !weights.is_file() {
            bail!(
                "cannot read {}; run `docstream models fetch` to download the local models",
                weights.display()
            );
        }
        let loaded = Arc::new(OnceLock::new());
        let (cell, path) = (loaded.clone(), dir.to_path_buf());
        // Without a thread, the first embedding loads the model itself.
        let _ = std::thread::Builder::new()
            .name("embedder-load".into())
            .spawn(move || {
                cell.get_or_init(|| load(&path, max_tokens));
            });
        Ok(Self {
            loaded,
            dir: dir.to_path_buf(),
            max_tokens,
            dims,
        })
    }

    pub fn dims(&self) -> usize {
        self.dims
    }

    /// The loaded model, waiting for the load if it is under way.
    pub fn get(&self) -> Result<MutexGuard<'_, LocalEmbedder>, String> {
        let model = self
            .loaded
            .get_or_init(|| load(&self.dir, self.max_tokens))
            .as_ref()
            .map_err(Clone::clone)?;
        model.lock().map_err(|_| "embedder poisoned".to_string())
    }
}

fn load(dir: &Path, max_tokens: usize) -> Result<Mutex<LocalEmbedder>, String> {
    LocalEmbedder::load(dir, max_tokens)
        .map(Mutex::new)
        .map_err(|e| format!("{e:#}"))
}

/// `config.json` in `dir`.
fn read_config(dir: &Path) -> Result<Config> {
    let path = dir.join("config.json");
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "cannot read {}; run `docstream models fetch` to download the local models",
            path.display()
        )
    })?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a model config", path.display()))
}

impl LocalEmbedder {
    /// Loads `model.safetensors`, `config.json` and `tokenizer.json` from `dir`.
    pub fn load(dir: &Path, max_tokens: usize) -> Result<Self> {
        let read = |name: &str| {
            std::fs::read(dir.join(name)).with_context(|| {
                format!(
                    "cannot read {}; run `docstream models fetch` to download the local models",
                    dir.join(name).display()
                )
            })
        };
        let config = read_config(dir)?;
        let dims = config.hidden_size;
        let weights = dir.join("model.safetensors");
        // The tokenizer's JSON and the weights load side by side: together
        // they are most of a search command's start-up.
        let (tokenizer, vb) = std::thread::scope(|s| {
            let tokenizer = s.spawn(|| -> Result<Tokenizer> {
                let mut tokenizer = Tokenizer::from_bytes(read("tokenizer.json")?)
                    .map_err(|e| anyhow::anyhow!("tokenizer.json: {e}"))?;
                tokenizer
                    .with_truncation(Some(TruncationParams {
                        max_length: max_tokens.min(config.max_position_embeddings),
                        stride: SPLIT_STRIDE,
                        ..Default::default()
                    }))
                    .map_err(|e| anyhow::anyhow!("tokenizer: {e}"))?;
                tokenizer.with_padding(None);
                Ok(tokenizer)
            });
            // SAFETY: fetched model files are never written again; mapping
            // spares reading 90 MB before copying it into tensors.
            let vb = unsafe {
                VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &Device::Cpu)
            }
            .with_context(|| {
                format!(
                    "cannot read {}; run `docstream models fetch` to download the local models",
                    weights.display()
                )
            });
            let tokenizer = tokenizer
                .join()
                .map_err(|_| anyhow::anyhow!("the tokenizer's loader panicked"))?;
            anyhow::Ok((tokenizer?, vb?))
        })?;
        let model = BertModel::load(vb, &config)?;
        Ok(Self {
            model,
            tokenizer,
            dims,
        })
    }

    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Embeds `texts`. A text longer than the context is truncated, or with
    /// `split`, embedded window by window and the windows averaged.
    pub fn embed(&self, texts: &[String], split: bool) -> Result<Embedded> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| anyhow::anyhow!("tokenizer: {e}"))?;
        // (input index, window) for every window to run.
        let mut windows: Vec<(usize, &Encoding)> = Vec::new();
        let mut truncated = 0;
        for (i, enc) in encodings.iter().enumerate() {
            windows.push((i, enc));
            if !enc.get_overflowing().is_empty() {
                truncated += 1;
                if split {
                    windows.extend(enc.get_overflowing().iter().map(|o| (i, o)));
                }
            }
        }
        let tokens = windows.iter().map(|(_, e)| e.len() as u64).sum();
        let mut sums = vec![vec![0f32; self.dims]; texts.len()];
        for pass in windows.chunks(WINDOWS_PER_PASS) {
            let pooled = self.forward(pass.iter().map(|(_, e)| *e))?;
            for ((i, _), vector) in pass.iter().zip(pooled) {
                for (s, v) in sums[*i].iter_mut().zip(vector) {
                    *s += v;
                }
            }
        }
        let vectors = sums.into_iter().map(normalize).collect();
        Ok(Embedded {
            vectors,
            tokens,
            truncated,
        })
    }

    /// Mean-pooled (over the attention mask) last hidden states, one per window.
    fn forward<'a>(&self, windows: impl Iterator<Item = &'a Encoding>) -> Result<Vec<Vec<f32>>> {
        let windows: Vec<&Encoding> = windows.collect();
        let len = windows.iter().map(|e| e.len()).max().unwrap_or(0).max(1);
        let mut ids = Vec::with_capacity(windows.len() * len);
        let mut mask = Vec::with_capacity(windows.len() * len);
        for e in &windows {
            ids.extend_from_slice(e.get_ids());
            mask.extend_from_slice(e.get_attention_mask());
            let pad = len - e.len();
            ids.extend(std::iter::repeat_n(0u32, pad));
            mask.extend(std::iter::repeat_n(0u32, pad));
        }
        let shape = (windows.len(), len);
        let device = &self.model.device;
        let ids = Tensor::from_vec(ids, shape, device)?;
        let mask = Tensor::from_vec(mask, shape, device)?;
        let hidden = self.model.forward(&ids, &ids.zeros_like()?, Some(&mask))?;
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
        Ok(summed.broadcast_div(&counts)?.to_vec2::<f32>()?)
    }
}

fn normalize(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}
