//! GBNF grammars that keep an in-process model's output inside a task's
//! JSON schema, sized for a small model.

use serde_json::Value;

/// llama.cpp's grammar for `schema`, capped and single-spaced.
pub fn from_schema(schema: &Value) -> Result<String, String> {
    let grammar = llama_cpp_2::json_schema_to_grammar(&compact(schema).to_string())
        .map_err(|e| e.to_string())?;
    Ok(single_spaced(&grammar))
}

/// Longest lists and strings a small local model may produce: within the
/// task schema (so valid output stays valid), short enough that the answer
/// ends before `max_output_tokens` instead of being cut off mid-string.
const LOCAL_MAX_ITEMS: u64 = 3;
const LOCAL_MAX_LENGTH: u64 = 100;

/// `schema` with every maxItems and maxLength capped for a small model.
fn compact(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                let v = match (k.as_str(), v.as_u64()) {
                    ("maxItems", Some(n)) => Value::from(n.min(LOCAL_MAX_ITEMS)),
                    ("maxLength", Some(n)) => Value::from(n.min(LOCAL_MAX_LENGTH)),
                    _ => compact(v),
                };
                out.insert(k.clone(), v);
            }
            if out.get("type") == Some(&Value::String("array".into()))
                && !out.contains_key("maxItems")
            {
                out.insert("maxItems".into(), Value::from(LOCAL_MAX_ITEMS));
            }
            if out.get("type") == Some(&Value::String("string".into()))
                && !out.contains_key("maxLength")
                && !out.contains_key("enum")
                && !out.contains_key("pattern")
            {
                out.insert("maxLength".into(), Value::from(LOCAL_MAX_LENGTH));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(compact).collect()),
        other => other.clone(),
    }
}

/// llama.cpp's JSON grammar lets whitespace run to newlines and indentation;
/// a small model spends its token budget there. One space at most.
fn single_spaced(grammar: &str) -> String {
    grammar
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("space ::=") {
                "space ::= \" \"?"
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}
