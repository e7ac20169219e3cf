//! Parsers for flag values that clap's own do not range-check.

/// Seconds: a finite number from 0 to a year, so every later conversion
/// to a `Duration` holds.
pub fn seconds(s: &str) -> Result<f64, String> {
    const YEAR: f64 = 365.0 * 24.0 * 3600.0;
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=YEAR).contains(&v) => Ok(v),
        Ok(_) => Err(format!(
            "'{s}' is out of range: give seconds from 0 to {YEAR}"
        )),
        Err(_) => Err(format!("'{s}' is not a number of seconds, e.g. 2.5")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_finite_and_in_range() {
        assert_eq!(seconds("2.5"), Ok(2.5));
        assert_eq!(seconds("0"), Ok(0.0));
        for bad in ["-1", "inf", "nan", "1e300", "ten"] {
            assert!(seconds(bad).is_err(), "{bad}");
        }
    }
}
