//! `redact_pii`: replaces emails, phone numbers, payment card numbers (Luhn
//! checked) and national ids with placeholders before text leaves the process.

use std::sync::LazyLock;

use regex::{Captures, Regex};

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b").expect("valid")
});
// 13–19 digits, optionally grouped by single spaces or dashes.
static CARD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b\d(?:[ -]?\d){12,18}\b").expect("valid"));
// US SSN (not 000/666/9xx areas) and UK National Insurance numbers.
static NATIONAL_ID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"\b(?:(?:00[1-9]|0[1-9]\d|[1-578]\d\d|6[0-57-9]\d|66[0-57-9])-\d\d-\d{4}",
        r"|[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d\d ?\d\d ?\d\d ?[A-D])\b"
    ))
    .expect("valid")
});
// International (+CC ...) or North-American style (555) 123-4567 / 555-123-4567.
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){2,4}",
        r"|\(\d{3}\) ?\d{3}[ .-]\d{4}|\b\d{3}[.-]\d{3}[.-]\d{4})\b"
    ))
    .expect("valid")
});

pub const EMAIL_TAG: &str = "[EMAIL]";
pub const PHONE_TAG: &str = "[PHONE]";
pub const CARD_TAG: &str = "[CARD]";
pub const NATIONAL_ID_TAG: &str = "[NATIONAL_ID]";

/// Returns `text` with personal data replaced by `[EMAIL]`, `[CARD]`,
/// `[NATIONAL_ID]` and `[PHONE]`. Digit runs that fail the Luhn check are
/// left alone, so order numbers and ids survive.
pub fn redact_pii(text: &str) -> String {
    let text = EMAIL.replace_all(text, EMAIL_TAG);
    let text = CARD.replace_all(&text, |c: &Captures| {
        let m = &c[0];
        if luhn_valid(m) {
            CARD_TAG.to_string()
        } else {
            m.to_string()
        }
    });
    let text = NATIONAL_ID.replace_all(&text, NATIONAL_ID_TAG);
    PHONE.replace_all(&text, PHONE_TAG).into_owned()
}

/// The Luhn checksum over the digits of `s`.
pub fn luhn_valid(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| match (i % 2, d * 2) {
            (0, _) => d,
            (_, x) if x > 9 => x - 9,
            (_, x) => x,
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_each_kind() {
        let cases = [
            ("mail jane.doe+x@example.co.uk now", "mail [EMAIL] now"),
            ("card 4111 1111 1111 1111.", "card [CARD]."),
            ("card 4111-1111-1111-1111", "card [CARD]"),
            ("ssn 123-45-6789 ok", "ssn [NATIONAL_ID] ok"),
            ("nino AB 12 34 56 C.", "nino [NATIONAL_ID]."),
            ("call +44 20 7946 0958 today", "call [PHONE] today"),
            ("call (555) 123-4567", "call [PHONE]"),
            ("call 555.123.4567", "call [PHONE]"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_pii(input), want, "{input}");
        }
    }

    #[test]
    fn leaves_look_alikes() {
        for keep in [
            "order 4111 1111 1111 1112",
            "due 2024-01-15 and v1.2.3",
            "invoice 1234567890123 is open",
            "ssn-like 000-12-3456",
            "plain text with no personal data",
            "",
        ] {
            assert_eq!(redact_pii(keep), keep);
        }
    }

    #[test]
    fn luhn() {
        assert!(luhn_valid("4539 1488 0343 6467"));
        assert!(!luhn_valid("4539 1488 0343 6468"));
        assert!(!luhn_valid("12"));
    }
}
