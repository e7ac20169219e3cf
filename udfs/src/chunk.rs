//! Token-bounded text chunking.
//!
//! A chunk never holds more than `max_tokens` tokens, counted on the chunk's own
//! text as a model would see it. Cuts prefer, in order: paragraph breaks, sentence
//! ends and line breaks, word starts, and token boundaries; within the best kind
//! found in the back half of the token window, the latest one wins, so chunks
//! stay close to the budget. Chunks are contiguous slices of the input: with no
//! overlap their concatenation is the input, byte for byte.

use crate::tokens::{count_tokens, Encoding};

/// The smallest budget that always fits one character (at most 4 byte tokens).
pub const MIN_MAX_TOKENS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChunkParams {
    pub max_tokens: usize,
    /// Tokens repeated from the end of one chunk at the start of the next.
    pub overlap: usize,
    pub encoding: Encoding,
}

impl Default for ChunkParams {
    fn default() -> Self {
        Self {
            max_tokens: 512,
            overlap: 64,
            encoding: Encoding::Cl100kBase,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("max_tokens must be at least {MIN_MAX_TOKENS}, got {0}")]
    MaxTokensTooSmall(i64),
    #[error("overlap must be between 0 and max_tokens / 2 ({max}), got {overlap}")]
    BadOverlap { overlap: i64, max: usize },
}

impl ChunkParams {
    /// Builds parameters from untrusted integers (SQL arguments).
    pub fn new(max_tokens: i64, overlap: i64, encoding: Encoding) -> Result<Self, ChunkError> {
        let max = usize::try_from(max_tokens)
            .ok()
            .filter(|m| *m >= MIN_MAX_TOKENS)
            .ok_or(ChunkError::MaxTokensTooSmall(max_tokens))?;
        let bad_overlap = ChunkError::BadOverlap {
            overlap,
            max: max / 2,
        };
        let overlap = usize::try_from(overlap)
            .ok()
            .filter(|o| *o <= max / 2)
            .ok_or(bad_overlap)?;
        Ok(Self {
            max_tokens: max,
            overlap,
            encoding,
        })
    }
}

/// One chunk. Offsets count Unicode scalar values (Python `str` indexing), so
/// `text == doc[char_start:char_end]` in Python and in SQL `substr`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Chunk {
    pub idx: usize,
    pub text: String,
    pub n_tokens: usize,
    pub char_start: usize,
    pub char_end: usize,
    /// The pages of its first and last words, counted from 1, in a text
    /// whose pages are separated by form feeds (`\f`); `None` in a text
    /// without them.
    pub page_start: Option<usize>,
    pub page_end: Option<usize>,
}

/// Separates pages in extracted text (pdf pages, slides).
pub const PAGE_BREAK: char = '\u{c}';

/// Splits `text` into chunks of at most `params.max_tokens` tokens.
pub fn chunk_text(text: &str, params: &ChunkParams) -> Vec<Chunk> {
    let chunker = Chunker { text, params };
    let mut chunks = Vec::new();
    let mut start_chars = CharCursor::default();
    let mut end_chars = CharCursor::default();
    let paged = text.contains(PAGE_BREAK);
    let mut start_pages = PageCursor::default();
    let mut end_pages = PageCursor::default();
    let (mut start, mut prev_end) = (0, 0);
    while prev_end < text.len() {
        let cut = chunker.next_cut(start, prev_end).unwrap_or_else(|| {
            // The overlap left no room: start this chunk where the last one ended.
            chunker.next_cut(prev_end, prev_end).unwrap_or_else(|| {
                // Unreachable for valid params: one char always fits. Keep going anyway.
                let end = next_char_boundary(text, prev_end);
                let n_tokens = count_tokens(&text[prev_end..end], params.encoding);
                Cut {
                    window: chunker.window(prev_end),
                    end,
                    n_tokens,
                }
            })
        });
        let s = cut.window.start;
        let body = &text[s..cut.end];
        // The pages of the first and last words: a chunk that starts or
        // ends at a break belongs to the pages its words are on.
        let first = s + (body.len() - body.trim_start().len());
        let last = s + body.trim_end().len();
        chunks.push(Chunk {
            idx: chunks.len(),
            text: body.to_string(),
            n_tokens: cut.n_tokens,
            char_start: start_chars.advance(text, s),
            char_end: end_chars.advance(text, cut.end),
            page_start: paged.then(|| start_pages.advance(text, first)),
            page_end: paged.then(|| end_pages.advance(text, last.max(first))),
        });
        start = chunker.overlap_start(&cut);
        prev_end = cut.end;
    }
    chunks
}

/// Longest pretoken piece encoded whole; longer ones (a megabyte without a
/// space) are encoded only as far as one chunk can reach, keeping the work linear.
const MAX_PIECE_BYTES_PER_TOKEN: usize = 256;

struct Chunker<'a> {
    text: &'a str,
    params: &'a ChunkParams,
}

/// The text's tokens from one chunk start, encoded piece by piece only as far
/// as the budget reaches. Encoding from the chunk's own start, rather than
/// once for the whole text, makes the counts those of the chunk itself.
struct Window {
    start: usize,
    /// Byte offset after each token.
    ends: Vec<usize>,
    /// For each complete pretoken piece: byte offset after it, tokens up to it.
    pieces: Vec<(usize, usize)>,
    /// Whether every piece up to the end of the text was encoded.
    to_end: bool,
}

impl Window {
    /// Byte offset after the first `n` tokens.
    fn byte_after(&self, n: usize) -> usize {
        match n.min(self.ends.len()) {
            0 => self.start,
            n => self.ends[n - 1],
        }
    }
}

/// Where a chunk ends, with its exact token count and the window it came from.
struct Cut {
    window: Window,
    end: usize,
    n_tokens: usize,
}

impl Chunker<'_> {
    fn window(&self, start: usize) -> Window {
        let tok = self.params.encoding.tokenizer();
        let max = self.params.max_tokens;
        let mut w = Window {
            start,
            ends: Vec::with_capacity(max + 16),
            pieces: Vec::new(),
            to_end: true,
        };
        let mut pos = start;
        // The pretokenizer reads a piece to its end, which for a text without
        // whitespace is the rest of the text, once per chunk: split only as
        // far as one chunk can reach, so chunking stays linear.
        let limit = max * MAX_PIECE_BYTES_PER_TOKEN;
        let reach = floor_char_boundary(self.text, (start + limit).min(self.text.len()));
        let bounded = reach < self.text.len();
        for piece in tok.split(&self.text[start..reach]) {
            if w.ends.len() > max {
                w.to_end = false;
                break;
            }
            // A piece ending at the reach may go on past it.
            let at_edge = bounded && pos + piece.len() == reach;
            let whole = piece.len() <= limit && !at_edge;
            let part = if piece.len() <= limit {
                piece
            } else {
                &piece[..floor_char_boundary(piece, limit)]
            };
            for t in tok.bpe.encode_via_backtracking(part.as_bytes()) {
                pos += tok.bpe.token_len(t);
                w.ends.push(pos);
            }
            if !whole {
                w.to_end = false;
                break;
            }
            w.pieces.push((pos, w.ends.len()));
        }
        w
    }

    /// Exact token count of `text[w.start..cut]`, without encoding it again.
    ///
    /// The pretokenizer's regex has no look-behind and looks at most one
    /// character past a match, so the pieces of the slice's own split equal
    /// the window's pieces up to its last non-whitespace character; only the
    /// tail after the last such piece is encoded anew.
    fn count(&self, w: &Window, cut: usize) -> usize {
        let slice = &self.text[w.start..cut];
        let last_solid = slice
            .char_indices()
            .rev()
            .find(|(_, c)| !c.is_whitespace())
            .map_or(w.start, |(i, _)| w.start + i);
        let same = w.pieces.partition_point(|(end, _)| *end <= last_solid);
        let (from, tokens) = match same {
            0 => (w.start, 0),
            k => w.pieces[k - 1],
        };
        tokens + count_tokens(&self.text[from..cut], self.params.encoding)
    }

    /// Chooses where a chunk starting at `start` ends; the end must lie past
    /// `floor`. `None` when nothing past `floor` fits the budget.
    fn next_cut(&self, start: usize, floor: usize) -> Option<Cut> {
        let max = self.params.max_tokens;
        let w = self.window(start);
        let limit = max.min(w.ends.len());
        let mut hi = if w.to_end && w.ends.len() <= max {
            self.text.len()
        } else {
            w.byte_after(limit)
        };
        let mut lo = floor.max(w.byte_after(max / 2));
        loop {
            let end = if hi == self.text.len() {
                hi
            } else {
                self.best_boundary(&w, lo, hi)
                    .or_else(|| self.best_boundary(&w, floor, hi))?
            };
            let n_tokens = self.count(&w, end);
            if n_tokens <= max {
                return Some(Cut {
                    window: w,
                    end,
                    n_tokens,
                });
            }
            // Rare: the slice tokenizes longer on its own than inside the text.
            hi = prev_char_boundary(self.text, end);
            lo = lo.min(hi.saturating_sub(1)).max(floor);
            if hi <= floor {
                return None;
            }
        }
    }

    /// The best cut position `p` with `lo < p <= hi`: highest boundary kind first,
    /// then the latest position.
    fn best_boundary(&self, w: &Window, lo: usize, hi: usize) -> Option<usize> {
        let bytes = self.text.as_bytes();
        let mut best: Option<(Boundary, usize)> = None;
        // Backwards, so the first break of a kind is its latest, and the
        // latest paragraph break ends the search.
        for p in (lo + 1..=hi).rev() {
            if !self.text.is_char_boundary(p) {
                continue;
            }
            let kind = boundary_kind(self.text, bytes, p);
            if kind == Boundary::Paragraph {
                return Some(p);
            }
            if kind > Boundary::Char && best.is_none_or(|(k, _)| kind > k) {
                best = Some((kind, p));
            }
        }
        best.map(|(_, p)| p).or_else(|| {
            // No word break: fall back to the latest token end on a char boundary,
            // then to any char boundary.
            let from = w.ends.partition_point(|e| *e <= lo);
            let to = w.ends.partition_point(|e| *e <= hi);
            w.ends[from..to]
                .iter()
                .rev()
                .copied()
                .find(|e| self.text.is_char_boundary(*e))
                .or_else(|| Some(floor_char_boundary(self.text, hi)).filter(|p| *p > lo))
        })
    }

    /// Where the chunk after `cut` begins so that it repeats about `overlap`
    /// tokens, snapped forward to a word start when one is near.
    fn overlap_start(&self, cut: &Cut) -> usize {
        let (w, end) = (&cut.window, cut.end);
        let overlap = self.params.overlap;
        if overlap == 0 || end >= self.text.len() {
            return end;
        }
        let tokens_before_end = w.ends.partition_point(|e| *e <= end);
        let Some(first) = tokens_before_end.checked_sub(overlap) else {
            return end;
        };
        let candidate = w.byte_after(first).max(w.start + 1);
        let bytes = self.text.as_bytes();
        (candidate..end)
            .filter(|p| self.text.is_char_boundary(*p))
            .find(|p| *p > 0 && boundary_kind(self.text, bytes, *p) >= Boundary::Word)
            .or_else(|| Some(next_char_boundary(self.text, candidate - 1)).filter(|p| *p < end))
            .unwrap_or(end)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Boundary {
    Char,
    Word,
    Sentence,
    Paragraph,
}

/// What kind of break lies just before byte `p` (a char boundary, `0 < p < len`).
fn boundary_kind(text: &str, bytes: &[u8], p: usize) -> Boundary {
    let before = &bytes[..p];
    if before.ends_with(b"\n\n") || before.ends_with(b"\n\r\n") {
        return Boundary::Paragraph;
    }
    let prev = before[p - 1];
    if prev == b'\n' {
        return Boundary::Sentence;
    }
    let next_is_space = bytes.get(p).is_none_or(|b| b.is_ascii_whitespace());
    if !prev.is_ascii_whitespace() || next_is_space {
        return Boundary::Char;
    }
    let ends_sentence = text[..p]
        .trim_end()
        .trim_end_matches(['"', '\'', ')', ']', '”', '’'])
        .ends_with(['.', '!', '?', '…', '。', '！', '？']);
    if ends_sentence {
        Boundary::Sentence
    } else {
        Boundary::Word
    }
}

fn next_char_boundary(text: &str, mut p: usize) -> usize {
    p += 1;
    while p < text.len() && !text.is_char_boundary(p) {
        p += 1;
    }
    p.min(text.len())
}

fn prev_char_boundary(text: &str, mut p: usize) -> usize {
    p = p.saturating_sub(1);
    while p > 0 && !text.is_char_boundary(p) {
        p -= 1;
    }
    p
}

fn floor_char_boundary(text: &str, mut p: usize) -> usize {
    while p > 0 && !text.is_char_boundary(p) {
        p -= 1;
    }
    p
}

/// Converts increasing byte offsets to char offsets in one pass.
#[derive(Default)]
struct CharCursor {
    byte: usize,
    chars: usize,
}

impl CharCursor {
    fn advance(&mut self, text: &str, byte: usize) -> usize {
        self.chars += text[self.byte..byte].chars().count();
        self.byte = byte;
        self.chars
    }
}

/// The page at a byte offset, for offsets that only grow.
#[derive(Default)]
struct PageCursor {
    byte: usize,
    breaks: usize,
}

impl PageCursor {
    fn advance(&mut self, text: &str, byte: usize) -> usize {
        if byte > self.byte {
            self.breaks += text[self.byte..byte].matches(PAGE_BREAK).count();
            self.byte = byte;
        }
        self.breaks + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn params(max: i64, overlap: i64) -> ChunkParams {
        ChunkParams::new(max, overlap, Encoding::Cl100kBase).unwrap()
    }

    fn slice_chars(text: &str, a: usize, b: usize) -> String {
        text.chars().skip(a).take(b - a).collect()
    }

    /// Every invariant the chunker promises, checked on one input.
    fn check(text: &str, p: &ChunkParams) -> Vec<Chunk> {
        let chunks = chunk_text(text, p);
        if text.is_empty() {
            assert!(chunks.is_empty());
            return chunks;
        }
        assert!(!chunks.is_empty());
        assert_eq!(chunks[0].char_start, 0);
        assert_eq!(chunks.last().unwrap().char_end, text.chars().count());
        for (i, c) in chunks.iter().enumerate() {
            assert_eq!(c.idx, i);
            assert!(!c.text.is_empty());
            assert!(
                c.n_tokens <= p.max_tokens,
                "chunk {i} has {} tokens",
                c.n_tokens
            );
            assert_eq!(c.n_tokens, count_tokens(&c.text, p.encoding));
            assert_eq!(slice_chars(text, c.char_start, c.char_end), c.text);
        }
        for w in chunks.windows(2) {
            assert!(w[1].char_start > w[0].char_start, "no progress");
            assert!(w[1].char_end > w[0].char_end, "no progress");
            assert!(w[1].char_start <= w[0].char_end, "gap between chunks");
            let repeated = slice_chars(text, w[1].char_start, w[0].char_end);
            assert!(count_tokens(&repeated, p.encoding) <= p.overlap + 4);
            if p.overlap == 0 {
                assert_eq!(w[1].char_start, w[0].char_end);
            }
        }
        if p.overlap == 0 {
            let joined: String = chunks.iter().map(|c| c.text.as_str()).collect();
            assert_eq!(joined, text);
        }
        chunks
    }

    #[test]
    fn validates_params() {
        assert!(ChunkParams::new(7, 0, Encoding::Cl100kBase).is_err());
        assert!(ChunkParams::new(-1, 0, Encoding::Cl100kBase).is_err());
        assert!(ChunkParams::new(100, 51, Encoding::Cl100kBase).is_err());
        assert!(ChunkParams::new(100, -1, Encoding::Cl100kBase).is_err());
        assert!(ChunkParams::new(100, 50, Encoding::Cl100kBase).is_ok());
    }

    #[test]
    fn chunks_know_the_pages_their_words_are_on() {
        let page = |n: usize| format!("Page {n} holds a paragraph of several words.");
        let text = format!("{}\n\u{c}\n{}\n\u{c}\n\u{c}\n{}", page(1), page(2), page(4));
        let whole = check(&text, &params(200, 0));
        assert_eq!(whole.len(), 1);
        assert_eq!((whole[0].page_start, whole[0].page_end), (Some(1), Some(4)));
        let small = check(&text, &params(12, 0));
        let pages: Vec<_> = small.iter().map(|c| (c.page_start, c.page_end)).collect();
        assert_eq!(
            pages,
            [(Some(1), Some(1)), (Some(2), Some(2)), (Some(4), Some(4))]
        );
        assert_eq!(check("No breaks.", &params(16, 0))[0].page_start, None);
    }

    #[test]
    fn empty_and_short_inputs() {
        assert!(check("", &params(16, 0)).is_empty());
        let c = check("Hello.", &params(16, 4));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].text, "Hello.");
    }

    #[test]
    fn prefers_paragraphs_then_sentences() {
        let para = "This sentence has some words in it. ".repeat(3);
        let text = format!("{para}\n\n{para}\n\n{para}");
        let per_para = count_tokens(&format!("{para}\n\n"), Encoding::Cl100kBase);
        let chunks = check(&text, &params(per_para as i64 + 5, 0));
        assert_eq!(chunks.len(), 3);
        assert!(chunks[0].text.ends_with("\n\n"));
        assert!(chunks[1].text.starts_with("This"));

        let chunks = check(&para.repeat(4), &params(20, 0));
        assert!(chunks.len() > 1);
        for c in &chunks[..chunks.len() - 1] {
            assert!(
                c.text.trim_end().ends_with('.'),
                "cut mid-sentence: {:?}",
                c.text
            );
        }
    }

    #[test]
    fn falls_back_to_words_then_tokens() {
        let words = "alpha beta gamma delta epsilon zeta eta theta ".repeat(20);
        for c in &check(&words, &params(16, 0))[..1] {
            assert!(c.text.ends_with(' '));
        }
        let blob = "x".repeat(5000);
        let chunks = check(&blob, &params(10, 2));
        assert!(chunks.len() > 10);
    }

    #[test]
    fn runs_without_whitespace_cut_at_the_reach_and_go_on_past_it() {
        // Pieces longer than one chunk can reach, then words after them.
        let text = format!(
            "{} tail words here. {}",
            "Qm9v".repeat(40_000),
            "ab".repeat(3000)
        );
        let chunks = check(&text, &params(64, 8));
        assert!(chunks.iter().any(|c| c.text.contains("tail words here.")));
        assert!(chunks.len() > 40_000 * 4 / (64 * MAX_PIECE_BYTES_PER_TOKEN));
    }

    #[test]
    fn overlap_repeats_the_tail() {
        let text = "one two three four five six seven eight nine ten. ".repeat(30);
        let chunks = check(&text, &params(40, 10));
        assert!(chunks.len() > 2);
        for w in chunks.windows(2) {
            assert!(w[1].char_start < w[0].char_end, "no overlap");
        }
    }

    #[test]
    fn unicode_and_o200k() {
        let text = "東京は日本の首都です。大阪も大きな都市です。🚀👩‍👩‍👧 café naïve\n\n".repeat(40);
        check(&text, &params(16, 4));
        let p = ChunkParams::new(32, 8, Encoding::O200kBase).unwrap();
        check(&text, &p);
    }

    #[test]
    fn huge_input() {
        let text = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(40_000);
        let chunks = check(&text, &params(512, 64));
        assert!(chunks.len() > 100);
    }

    #[test]
    fn deterministic() {
        let text = "Some text. More text!\n\nAnd more? Yes. ".repeat(50);
        assert_eq!(
            chunk_text(&text, &params(24, 6)),
            chunk_text(&text, &params(24, 6))
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn invariants_hold(
            text in "(\\PC|\n| ){0,600}",
            max in 8i64..80,
            overlap_frac in 0.0f64..0.5,
        ) {
            let overlap = ((max as f64) * overlap_frac) as i64;
            check(&text, &params(max, overlap.min(max / 2)));
        }

        /// Whitespace runs, contractions and digits are where a slice's own
        /// tokenization could differ from the window's: the count must not.
        #[test]
        fn counts_are_exact_around_whitespace(
            text in "( |  |\t|\n|\r\n|\u{a0}|\u{3000}|a|Ab|'s|'ll|1|123456|\\.|!|é|東){0,300}",
            max in 8i64..40,
        ) {
            check(&text, &params(max, max / 3));
            check(&text, &ChunkParams::new(max, 0, Encoding::O200kBase).unwrap());
        }

        #[test]
        fn invariants_hold_on_prose(
            words in proptest::collection::vec("[a-zA-Z]{1,12}[.,!?]?( |\n|\n\n)", 0..400),
            max in 8i64..120,
        ) {
            let text: String = words.concat();
            check(&text, &params(max, max / 4));
            check(&text, &params(max, 0));
        }
    }
}
