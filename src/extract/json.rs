//! JSON and NDJSON: the string fields, one `path: value` line each, so
//! the text keeps what each string is. Numbers and booleans are left out.

use serde_json::Value;

use super::{too_deep, ExtractError, Limits};
use crate::contract::failure::ErrorKind;

pub(super) fn json(text: &str, limits: &Limits) -> Result<String, ExtractError> {
    let value = parse(text, "json", limits)?;
    let mut out = String::new();
    strings(&value, &mut String::new(), &mut out);
    Ok(out)
}

/// One record per line; each record becomes its own paragraph.
pub(super) fn ndjson(text: &str, limits: &Limits) -> Result<String, ExtractError> {
    let mut out = String::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value = parse(line, &format!("line {}", n + 1), limits)?;
        strings(&value, &mut String::new(), &mut out);
        out.push('\n');
    }
    Ok(out)
}

fn parse(text: &str, what: &str, limits: &Limits) -> Result<Value, ExtractError> {
    // serde_json stops at 128 levels of nesting, well within max_depth.
    serde_json::from_str(text).map_err(|e| {
        if e.to_string().starts_with("recursion limit exceeded") {
            too_deep(limits)
        } else {
            ExtractError::new(ErrorKind::Corrupt, format!("{what} is not valid JSON: {e}"))
        }
    })
}

/// Appends each string in `value` as `path: value`, depth first.
fn strings(value: &Value, path: &mut String, out: &mut String) {
    match value {
        Value::String(s) if !s.trim().is_empty() => {
            if !path.is_empty() {
                out.push_str(path);
                out.push_str(": ");
            }
            out.push_str(s);
            out.push('\n');
        }
        Value::Array(items) => items.iter().for_each(|v| strings(v, path, out)),
        Value::Object(fields) => {
            for (key, v) in fields {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                strings(v, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_fields_keep_their_path() {
        let text = json(
            r#"{"title": "Q3 review", "n": 4, "items": [{"owner": "Ana"}, {"owner": "Bo"}]}"#,
            &Limits::default(),
        )
        .unwrap();
        // Key order depends on serde_json's preserve_order feature.
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort();
        assert_eq!(
            lines,
            ["items.owner: Ana", "items.owner: Bo", "title: Q3 review"]
        );
    }

    #[test]
    fn deep_nesting_and_bad_lines_fail_clearly() {
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        let e = json(&deep, &Limits::default()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::TooDeep);
        let e = ndjson("{\"a\": \"x\"}\n{oops\n", &Limits::default()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Corrupt);
        assert!(e.message.contains("line 2"), "{}", e.message);
    }
}
