//! One ranking order for every search: score first, then chunk, so the
//! same hits come out in the same order however an index was split.

use std::collections::HashMap;

/// Scores equal but for float rounding. Tantivy sums a row's term scores
/// in an order that depends on the index's segments, and vector scores
/// come from f32 sums, so equal rows can differ in the last bits.
pub fn tied(a: f64, b: f64) -> bool {
    (a - b).abs() <= a.abs().max(b.abs()) * 1e-5
}

/// A ranked hit: its score and its chunk.
pub trait Scored {
    fn key(&self) -> (f64, &String, i32);
}

/// Sorts by score, best first, ties by chunk.
pub fn rank<T>(hits: &mut [T], key: impl Fn(&T) -> (f64, &String, i32)) {
    hits.sort_by(|a, b| key(b).0.total_cmp(&key(a).0));
    let mut start = 0;
    while start < hits.len() {
        let top = key(&hits[start]).0;
        let end = start
            + hits[start..]
                .iter()
                .take_while(|h| tied(top, key(h).0))
                .count();
        hits[start..end].sort_by(|a, b| {
            let (a, b) = (key(a), key(b));
            (a.1, a.2).cmp(&(b.1, b.2))
        });
        start = end;
    }
}

/// The best `k` of `hits`, one per chunk (its best score), in rank order.
pub fn best<T: Scored>(hits: Vec<T>, k: usize) -> Vec<T> {
    let mut by_chunk: HashMap<(String, i32), T> = HashMap::new();
    for h in hits {
        let (score, doc, idx) = h.key();
        let key = (doc.clone(), idx);
        match by_chunk.get(&key) {
            Some(old) if old.key().0 >= score => {}
            _ => {
                by_chunk.insert(key, h);
            }
        }
    }
    let mut hits: Vec<T> = by_chunk.into_values().collect();
    rank(&mut hits, |h| h.key());
    hits.truncate(k);
    hits
}
