//! Okapi BM25 over chunk texts, computed at query time in one pass: no
//! index to build or keep in sync, at the cost of reading every candidate
//! chunk's text per search. Terms are lowercased alphanumeric words;
//! common English stop words and one-letter words are ignored.

/// BM25's term-frequency saturation and length normalisation.
const K1: f64 = 1.2;
const B: f64 = 0.75;

const STOP_WORDS: &[&str] = &[
    "an", "and", "are", "as", "at", "be", "by", "did", "do", "does", "for", "from", "has", "have",
    "how", "in", "is", "it", "its", "of", "on", "or", "that", "the", "their", "there", "this",
    "to", "was", "we", "were", "what", "when", "where", "which", "who", "why", "will", "with",
];

/// The query's distinct terms, in order.
pub fn terms(query: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in words(query) {
        let w = w.to_lowercase();
        if w.chars().count() > 1 && !STOP_WORDS.contains(&w.as_str()) && !out.contains(&w) {
            out.push(w);
        }
    }
    out
}

fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
}

/// Scores chunks against a query's terms. `K` identifies a chunk.
pub struct Bm25<K> {
    terms: Vec<String>,
    /// Chunks holding each term.
    df: Vec<u64>,
    chunks: u64,
    words: u64,
    /// Chunks holding any term: key, length in words, count of each term.
    matches: Vec<(K, u32, Vec<u32>)>,
}

impl<K> Bm25<K> {
    pub fn new(terms: Vec<String>) -> Self {
        Self {
            df: vec![0; terms.len()],
            terms,
            chunks: 0,
            words: 0,
            matches: Vec::new(),
        }
    }

    /// Counts one chunk; returns whether it holds any of the terms.
    pub fn add(&mut self, key: K, text: &str) -> bool {
        let mut tf = vec![0u32; self.terms.len()];
        let mut len = 0u32;
        for w in words(text) {
            len += 1;
            // Most words match no term; compare before lowercasing.
            for (i, t) in self.terms.iter().enumerate() {
                if w.len() == t.len() && w.to_lowercase() == *t {
                    tf[i] += 1;
                }
            }
        }
        self.chunks += 1;
        self.words += len as u64;
        let hit = tf.iter().any(|&n| n > 0);
        if hit {
            for (df, n) in self.df.iter_mut().zip(&tf) {
                *df += (*n > 0) as u64;
            }
            self.matches.push((key, len, tf));
        }
        hit
    }

    /// Matching chunks, best first (ties by key, so partitioning does not
    /// change the order).
    pub fn ranked(self) -> Vec<(K, f64)>
    where
        K: Ord,
    {
        let avg = self.words as f64 / self.chunks.max(1) as f64;
        let n = self.chunks as f64;
        let idf: Vec<f64> = self
            .df
            .iter()
            .map(|&df| (1.0 + (n - df as f64 + 0.5) / (df as f64 + 0.5)).ln())
            .collect();
        let mut scored: Vec<(K, f64)> = self
            .matches
            .into_iter()
            .map(|(key, len, tf)| {
                let norm = K1 * (1.0 - B + B * len as f64 / avg.max(1.0));
                let score = tf
                    .iter()
                    .zip(&idf)
                    .map(|(&f, idf)| idf * (f as f64 * (K1 + 1.0)) / (f as f64 + norm))
                    .sum();
                (key, score)
            })
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        scored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_terms_skip_stop_words_and_repeats() {
        assert_eq!(
            terms("What is the budget overrun on the Budget?"),
            ["budget", "overrun"]
        );
    }

    #[test]
    fn rarer_terms_and_denser_chunks_rank_higher() {
        let mut bm = Bm25::new(terms("vendor delay"));
        bm.add(0, "The vendor shipped on time. Vendor invoices were paid.");
        bm.add(
            1,
            "A delay at the vendor pushed the launch; the delay costs money.",
        );
        bm.add(2, "Nothing relevant here at all.");
        bm.add(3, "The vendor vendor vendor met us.");
        let ranked: Vec<i32> = bm.ranked().into_iter().map(|(k, _)| k).collect();
        // Only chunk 1 holds the rarer term "delay"; chunk 2 holds none.
        assert_eq!(ranked[0], 1);
        assert!(!ranked.contains(&2));
        assert_eq!(ranked.len(), 3);
    }

    #[test]
    fn scores_match_the_formula() {
        let mut bm = Bm25::new(terms("alpha"));
        bm.add("a", "alpha beta");
        bm.add("b", "gamma delta epsilon zeta");
        let ranked = bm.ranked();
        // N = 2, df = 1, avgdl = 3, |a| = 2, tf = 1.
        let idf = (1.0f64 + (2.0 - 1.0 + 0.5) / 1.5).ln();
        let norm = K1 * (1.0 - B + B * 2.0 / 3.0);
        let want = idf * (K1 + 1.0) / (1.0 + norm);
        assert_eq!(ranked.len(), 1);
        assert!((ranked[0].1 - want).abs() < 1e-12);
    }
}
