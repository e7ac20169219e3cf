//! Token encodings and counting.
//!
//! The encodings are OpenAI's `cl100k_base` and `o200k_base` as defined by
//! tiktoken. Counting uses GitHub's `bpe-openai`, which yields the same tokens
//! (checked against tiktoken-rs in the tests) several times faster; see
//! `benches/chunking.rs` for the side-by-side numbers.

use std::fmt;
use std::str::FromStr;

use bpe_openai::Tokenizer;

/// A BPE encoding that token counts and chunk limits are measured in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// GPT-4 / text-embedding-3 encoding.
    #[default]
    #[serde(rename = "cl100k_base")]
    Cl100kBase,
    /// GPT-4o encoding.
    #[serde(rename = "o200k_base")]
    O200kBase,
}

impl Encoding {
    pub const ALL: [Encoding; 2] = [Encoding::Cl100kBase, Encoding::O200kBase];

    pub fn name(self) -> &'static str {
        match self {
            Encoding::Cl100kBase => "cl100k_base",
            Encoding::O200kBase => "o200k_base",
        }
    }

    pub(crate) fn tokenizer(self) -> &'static Tokenizer {
        match self {
            Encoding::Cl100kBase => bpe_openai::cl100k_base(),
            Encoding::O200kBase => bpe_openai::o200k_base(),
        }
    }

    /// Token ids of `text`, identical to tiktoken's `encode_ordinary`.
    pub fn encode(self, text: &str) -> Vec<u32> {
        self.tokenizer().encode(text)
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown token encoding '{0}': use cl100k_base or o200k_base")]
pub struct UnknownEncoding(pub String);

impl FromStr for Encoding {
    type Err = UnknownEncoding;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Encoding::ALL
            .into_iter()
            .find(|e| e.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownEncoding(s.to_string()))
    }
}

/// Number of tokens in `text` under `encoding`.
pub fn count_tokens(text: &str, encoding: Encoding) -> usize {
    encoding.tokenizer().count(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tiktoken(e: Encoding) -> &'static tiktoken_rs::CoreBPE {
        match e {
            Encoding::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
            Encoding::O200kBase => tiktoken_rs::o200k_base_singleton(),
        }
    }

    const SAMPLES: &[&str] = &[
        "",
        "Hello, world!",
        "  leading and trailing spaces   ",
        "The quarterly report's numbers weren't final.\n\nNext paragraph\r\nwith CRLF.",
        "naïve café — 東京 🚀 emoji 👩‍👩‍👧",
        "1234567890 3.14159 x=y+z; fn main() { println!(\"hi\"); }",
        "\n\n\n\t\t  \u{a0}mixed whitespace",
    ];

    #[test]
    fn same_tokens_as_tiktoken_on_samples() {
        for e in Encoding::ALL {
            for s in SAMPLES {
                assert_eq!(e.encode(s), tiktoken(e).encode_ordinary(s), "{e} on {s:?}");
                assert_eq!(count_tokens(s, e), tiktoken(e).encode_ordinary(s).len());
            }
        }
    }

    #[test]
    fn parses_names() {
        assert_eq!(
            "cl100k_base".parse::<Encoding>().unwrap(),
            Encoding::Cl100kBase
        );
        assert_eq!(
            "O200K_BASE".parse::<Encoding>().unwrap(),
            Encoding::O200kBase
        );
        assert!("gpt2".parse::<Encoding>().is_err());
    }

    proptest! {
        #[test]
        fn same_tokens_as_tiktoken(s in "\\PC{0,200}") {
            for e in Encoding::ALL {
                prop_assert_eq!(e.encode(&s), tiktoken(e).encode_ordinary(&s));
            }
        }
    }
}
