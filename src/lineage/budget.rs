//! `--max-cost-usd`: a cap on the estimated input cost of the model calls
//! a run makes. Each micro-batch is priced before its stages run (the
//! tokens of each document's text, at the stage's first provider's input
//! price), and a batch that would pass the cap stops the run before
//! anything of it lands.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use anyhow::{bail, Result};
use docstream_models::provider::ProviderConfig;
use docstream_udfs::{count_tokens, Encoding};

use crate::contract::extracted::ExtractedDoc;
use crate::stages::config::Stage;

pub struct Budget {
    max_usd: f64,
    /// USD per input token, by the name of each stage that calls a model.
    prices: HashMap<String, f64>,
    spent: Mutex<f64>,
}

impl Budget {
    pub fn new(
        max_usd: f64,
        stages: &[Stage],
        providers: &BTreeMap<String, ProviderConfig>,
    ) -> Self {
        let prices = stages
            .iter()
            .filter_map(|s| {
                let p = providers.get(s.providers.first()?)?;
                Some((s.name.clone(), p.price_input_per_1m / 1e6))
            })
            .collect();
        Self {
            max_usd,
            prices,
            spent: Mutex::new(0.0),
        }
    }

    /// The estimated cost of running `stages` on `docs`.
    pub fn estimate(&self, stages: &BTreeSet<String>, docs: &[&ExtractedDoc]) -> f64 {
        let per_token: f64 = stages.iter().filter_map(|s| self.prices.get(s)).sum();
        if per_token == 0.0 {
            return 0.0;
        }
        let tokens: usize = docs
            .iter()
            .map(|d| count_tokens(&d.text, Encoding::Cl100kBase))
            .sum();
        tokens as f64 * per_token
    }

    /// Adds `usd` to what the run spent, or fails, spending nothing, when
    /// that would pass the cap.
    pub fn charge(&self, usd: f64) -> Result<()> {
        let mut spent = self.spent.lock().unwrap_or_else(|p| p.into_inner());
        if *spent + usd > self.max_usd {
            bail!(
                "stopped before the next batch: it would bring the estimated model cost to ${:.4}, over --max-cost-usd {}; everything before it landed. Raise the cap, or narrow the run with --stages or --where (see `docstream plan`)",
                *spent + usd,
                self.max_usd
            );
        }
        *spent += usd;
        Ok(())
    }

    pub fn spent(&self) -> f64 {
        *self.spent.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_charge_past_the_cap_fails_and_spends_nothing() {
        let b = Budget {
            max_usd: 1.0,
            prices: [("summaries".to_string(), 0.5)].into(),
            spent: Mutex::new(0.0),
        };
        b.charge(0.6).unwrap();
        assert!(b.charge(0.5).is_err());
        assert_eq!(b.spent(), 0.6);
        b.charge(0.4).unwrap();

        let doc = ExtractedDoc {
            doc_id: "d".into(),
            tenant: "t".into(),
            source_uri: "u".into(),
            content_hash: "h".into(),
            mime: "text/plain".into(),
            title: None,
            text: "one two three".into(),
            event_time: None,
            ingested_at: chrono::Utc::now(),
            metadata: "{}".into(),
            parent_doc_id: None,
        };
        let stages: BTreeSet<String> = ["summaries".to_string(), "chunks".to_string()].into();
        assert_eq!(b.estimate(&stages, &[&doc]), 3.0 * 0.5);
        assert_eq!(b.estimate(&["chunks".to_string()].into(), &[&doc]), 0.0);
    }
}
