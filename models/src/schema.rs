//! Validates model output against the JSON schemas in `schemas/models/`.
//!
//! Covers the keywords those schemas use: type (one or a list), properties,
//! required, additionalProperties: false, items, minItems/maxItems, enum,
//! minLength/maxLength, pattern, minimum/maximum. An unknown keyword is
//! ignored, as JSON Schema prescribes.

use serde_json::Value;

/// `Err` names the first violation with its JSON path.
pub fn validate(value: &Value, schema: &Value) -> Result<(), String> {
    check(value, schema, "$")
}

fn check(value: &Value, schema: &Value, path: &str) -> Result<(), String> {
    if let Some(types) = types(schema) {
        if !types.iter().any(|t| has_type(value, t)) {
            return Err(format!(
                "{path}: expected {}, got {value}",
                types.join(" or ")
            ));
        }
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            return Err(format!(
                "{path}: {value} is not one of {}",
                Value::Array(allowed.clone())
            ));
        }
    }
    match value {
        Value::String(s) => {
            let chars = s.chars().count() as u64;
            if schema["minLength"].as_u64().is_some_and(|m| chars < m) {
                return Err(format!("{path}: shorter than minLength"));
            }
            if schema["maxLength"].as_u64().is_some_and(|m| chars > m) {
                return Err(format!("{path}: longer than maxLength"));
            }
            if let Some(p) = schema["pattern"].as_str() {
                let re = regex::Regex::new(p).map_err(|e| format!("{path}: bad pattern: {e}"))?;
                if !re.is_match(s) {
                    return Err(format!("{path}: '{s}' does not match {p}"));
                }
            }
        }
        Value::Number(n) => {
            let Some(x) = n.as_f64() else {
                return Err(format!("{path}: {n} is not a finite number"));
            };
            if schema["minimum"].as_f64().is_some_and(|m| x < m) {
                return Err(format!("{path}: {x} is below the minimum"));
            }
            if schema["maximum"].as_f64().is_some_and(|m| x > m) {
                return Err(format!("{path}: {x} is above the maximum"));
            }
        }
        Value::Array(items) => {
            let n = items.len() as u64;
            if schema["minItems"].as_u64().is_some_and(|m| n < m) {
                return Err(format!("{path}: fewer than minItems"));
            }
            if schema["maxItems"].as_u64().is_some_and(|m| n > m) {
                return Err(format!("{path}: more than maxItems"));
            }
            if schema["items"].is_object() {
                for (i, item) in items.iter().enumerate() {
                    check(item, &schema["items"], &format!("{path}[{i}]"))?;
                }
            }
        }
        Value::Object(map) => {
            for name in schema["required"].as_array().into_iter().flatten() {
                if let Some(name) = name.as_str() {
                    if !map.contains_key(name) {
                        return Err(format!("{path}: missing required '{name}'"));
                    }
                }
            }
            let props = schema["properties"].as_object();
            for (name, v) in map {
                match props.and_then(|p| p.get(name)) {
                    Some(sub) => check(v, sub, &format!("{path}.{name}"))?,
                    None if schema["additionalProperties"] == Value::Bool(false) => {
                        return Err(format!("{path}: unexpected property '{name}'"))
                    }
                    None => {}
                }
            }
        }
        Value::Null | Value::Bool(_) => {}
    }
    Ok(())
}

fn types(schema: &Value) -> Option<Vec<&str>> {
    match &schema["type"] {
        Value::String(t) => Some(vec![t.as_str()]),
        Value::Array(ts) => Some(ts.iter().filter_map(Value::as_str).collect()),
        _ => None,
    }
}

fn has_type(value: &Value, ty: &str) -> bool {
    match ty {
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.as_f64().is_some_and(|x| x.fract() == 0.0),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "null" => value.is_null(),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_valid_and_names_violations() {
        let schema: Value = serde_json::from_str(include_str!(
            "../../schemas/models/action_items.schema.json"
        ))
        .unwrap();
        let ok = json!({"action_items": [{"task": "Ship", "owner": null, "due_date": "2026-01-02", "priority": "high", "evidence": "x"}]});
        assert_eq!(validate(&ok, &schema), Ok(()));
        let cases = [
            (json!({}), "missing required 'action_items'"),
            (
                json!({"action_items": [{"task": "Ship", "owner": null, "due_date": "Friday", "priority": "high", "evidence": ""}]}),
                "does not match",
            ),
            (
                json!({"action_items": [{"task": "Ship", "owner": 3, "due_date": null, "priority": "high", "evidence": ""}]}),
                "expected string or null",
            ),
            (
                json!({"action_items": [{"task": "Ship", "owner": null, "due_date": null, "priority": "urgent", "evidence": ""}]}),
                "is not one of",
            ),
            (
                json!({"action_items": [], "extra": 1}),
                "unexpected property 'extra'",
            ),
            (
                json!({"action_items": [{"task": "", "owner": null, "due_date": null, "priority": "low", "evidence": ""}]}),
                "minLength",
            ),
        ];
        for (value, want) in cases {
            let err = validate(&value, &schema).unwrap_err();
            assert!(err.contains(want), "{err} should mention {want}");
        }
    }
}
