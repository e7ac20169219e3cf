//! A small GGUF chat model in-process through llama.cpp, with output
//! constrained by a GBNF grammar derived from the task's JSON schema.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context, Result};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;

/// llama.cpp's global state: initialised once per process.
fn backend() -> Result<&'static LlamaBackend> {
    static BACKEND: OnceLock<std::result::Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let mut backend = LlamaBackend::init().map_err(|e| e.to_string())?;
            backend.void_logs();
            Ok(backend)
        })
        .as_ref()
        .map_err(|e| anyhow!("llama.cpp backend: {e}"))
}

const REPEAT_WINDOW: i32 = 64;
const REPEAT_PENALTY: f32 = 1.15;

pub struct LocalGenerator {
    model: LlamaModel,
    template: LlamaChatTemplate,
    context_tokens: u32,
    threads: i32,
}

pub struct Generated {
    pub text: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl LocalGenerator {
    pub fn load(path: &Path, context_tokens: usize) -> Result<Self> {
        if !path.is_file() {
            bail!(
                "no model at {}; run `docstream models fetch` to download the local models",
                path.display()
            );
        }
        let model = LlamaModel::load_from_file(backend()?, path, &LlamaModelParams::default())
            .with_context(|| format!("cannot load {}", path.display()))?;
        let template = model
            .chat_template(None)
            .map_err(|e| anyhow!("{} has no chat template: {e}", path.display()))?;
        let context_tokens = (context_tokens as u32).min(model.n_ctx_train()).max(256);
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as i32;
        Ok(Self {
            model,
            template,
            context_tokens,
            threads,
        })
    }

    pub fn context_tokens(&self) -> usize {
        self.context_tokens as usize
    }

    /// Tokens `text` takes in this model's vocabulary.
    pub fn count_tokens(&self, text: &str) -> usize {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), false, false)
            .len()
    }

    /// Greedy decoding of the assistant's reply, constrained by `grammar`
    /// (GBNF). Stops between tokens once `cancelled` is set: the caller
    /// gave up, so the core goes to the next request.
    pub fn generate(
        &self,
        system: &str,
        user: &str,
        grammar: Option<&str>,
        max_tokens: usize,
        cancelled: &AtomicBool,
    ) -> Result<Generated> {
        let message = |role: &str, content: &str| {
            LlamaChatMessage::new(role.into(), content.replace('\0', " "))
                .map_err(|e| anyhow!("{e}"))
        };
        let prompt = self.model.apply_chat_template(
            &self.template,
            &[message("system", system)?, message("user", user)?],
            true,
        )?;
        let vocab = self.model.vocab();
        let tokens = vocab.tokenize(prompt.as_bytes(), true, true);
        let budget = self.context_tokens as usize;
        if tokens.len() + max_tokens > budget {
            bail!(
                "prompt of {} tokens plus {max_tokens} output tokens exceeds the {budget}-token context",
                tokens.len()
            );
        }
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(self.context_tokens))
            .with_n_batch(self.context_tokens)
            .with_n_threads(self.threads)
            .with_n_threads_batch(self.threads);
        let mut ctx = self.model.new_context(backend()?, params)?;
        let mut batch = LlamaBatch::new(budget, 1);
        let last = tokens.len() as i32 - 1;
        for (pos, token) in (0i32..).zip(&tokens) {
            batch.add(*token, pos, &[0], pos == last)?;
        }
        ctx.decode(&mut batch)?;
        // A mild repeat penalty: greedy decoding of a small model otherwise
        // loops ("1.1.1.1...") until the token cap cuts the JSON short.
        let mut samplers = vec![LlamaSampler::penalties(
            self.model.n_vocab(),
            REPEAT_WINDOW,
            REPEAT_PENALTY,
            0.0,
            0.0,
        )];
        if let Some(g) = grammar {
            samplers.push(LlamaSampler::grammar(&self.model, g, "root")?);
        }
        samplers.push(LlamaSampler::greedy());
        let mut sampler = LlamaSampler::chain_simple(samplers);
        let mut out = Vec::new();
        let mut pos = tokens.len() as i32;
        let mut produced = 0;
        while produced < max_tokens {
            if cancelled.load(Ordering::Relaxed) {
                bail!("cancelled after {produced} tokens: the caller went away");
            }
            let token = sampler.sample(&ctx, batch.n_tokens() - 1);
            if vocab.is_eog(token) {
                break;
            }
            out.extend(vocab.token_to_piece(token, false, None));
            produced += 1;
            batch.clear();
            batch.add(token, pos, &[0], true)?;
            pos += 1;
            ctx.decode(&mut batch)?;
        }
        Ok(Generated {
            text: String::from_utf8_lossy(&out).into_owned(),
            input_tokens: tokens.len() as u64,
            output_tokens: produced as u64,
        })
    }
}
