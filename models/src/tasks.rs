//! The structured-output tasks: prompts, schemas, and how the results of a
//! long document's parts are combined.

use std::collections::HashSet;

use serde_json::{json, Value};

const SUMMARY: &str = include_str!("../../schemas/models/summary.schema.json");
const RISKS: &str = include_str!("../../schemas/models/risks.schema.json");
const ACTION_ITEMS: &str = include_str!("../../schemas/models/action_items.schema.json");
const CLASSIFICATION: &str = include_str!("../../schemas/models/classification.schema.json");
const ANSWER: &str = include_str!("../../schemas/models/answer.schema.json");

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Task {
    Summary,
    Risks,
    ActionItems,
    Classify(Vec<String>),
    /// Answer a question from numbered excerpts (`docstream ask`).
    Answer,
}

impl Task {
    pub fn name(&self) -> &'static str {
        match self {
            Task::Summary => "summary",
            Task::Risks => "risks",
            Task::ActionItems => "action_items",
            Task::Classify(_) => "classification",
            Task::Answer => "answer",
        }
    }

    /// Part of the cache key and of `summaries.prompt_version`: bump it when
    /// a prompt or schema changes, so cached answers are not reused.
    pub fn prompt_version(&self) -> String {
        match self {
            Task::Classify(labels) => format!("classification-v1[{}]", labels.join(",")),
            other => format!("{}-v1", other.name()),
        }
    }

    pub fn schema(&self) -> Value {
        let text = match self {
            Task::Summary => SUMMARY,
            Task::Risks => RISKS,
            Task::ActionItems => ACTION_ITEMS,
            Task::Classify(_) => CLASSIFICATION,
            Task::Answer => ANSWER,
        };
        // Compiled in and parsed by the tests.
        let mut schema: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        if let Task::Classify(labels) = self {
            schema["properties"]["doc_type"]["enum"] = json!(labels);
        }
        schema
    }

    pub fn system_prompt(&self) -> String {
        let what = match self {
            Task::Summary => {
                "Summarize the document in at most three sentences and list up to five key points."
            }
            Task::Risks => {
                "List the risks the document states or clearly implies: schedule, budget, security, legal, compliance, operational, technical, vendor or people risks. Quote the evidence. Use null for an unknown owner or mitigation. Return an empty list when there are none."
            }
            Task::ActionItems => {
                "List the tasks someone must do, with the owner and the due date (YYYY-MM-DD) when the document gives them, else null. Quote the evidence. Return an empty list when there are none."
            }
            Task::Classify(_) => {
                "Classify the document as exactly one of the allowed types, with your confidence between 0 and 1."
            }
            Task::Answer => {
                return "Answer the question using ONLY the numbered excerpts. Write each claim as one short sentence, with the numbers of the excerpts that state it in sources. If the excerpts do not contain the answer, reply with no claims. Never use outside knowledge. Reply with JSON only.".into()
            }
        };
        let labels = match self {
            Task::Classify(labels) => format!(" Allowed types: {}.", labels.join(", ")),
            _ => String::new(),
        };
        format!("{what}{labels} Answer only from the document. Reply with JSON only.")
    }

    pub fn user_prompt(&self, text: &str) -> String {
        match self {
            // Already excerpts plus the question.
            Task::Answer => text.to_string(),
            _ => format!("Document:\n{text}"),
        }
    }

    /// Whether a long document's parts are combined by another model call
    /// over the parts' results (summaries) or merged in code (lists).
    pub fn reduces_with_model(&self) -> bool {
        matches!(self, Task::Summary)
    }

    /// Text the reduce call summarizes: the parts' summaries in order.
    pub fn reduce_input(parts: &[Value]) -> String {
        parts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let points: Vec<&str> = p["key_points"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                format!(
                    "Part {}: {}\n{}",
                    i + 1,
                    p["summary"].as_str().unwrap_or_default(),
                    points
                        .iter()
                        .map(|k| format!("- {k}\n"))
                        .collect::<String>()
                )
            })
            .collect()
    }

    /// Merges the parts' lists, dropping repeats (same title or task, any
    /// case and spacing); classification keeps the most confident part.
    pub fn merge(&self, parts: Vec<Value>) -> Value {
        let (field, identity) = match self {
            Task::Risks => ("risks", "title"),
            Task::ActionItems => ("action_items", "task"),
            Task::Classify(_) => {
                return parts
                    .into_iter()
                    .max_by(|a, b| {
                        let c = |v: &Value| v["confidence"].as_f64().unwrap_or(0.0);
                        c(a).total_cmp(&c(b))
                    })
                    .unwrap_or(Value::Null)
            }
            Task::Summary => return parts.into_iter().next().unwrap_or(Value::Null),
            Task::Answer => {
                let claims: Vec<Value> = parts
                    .iter()
                    .filter_map(|p| p["claims"].as_array())
                    .flatten()
                    .cloned()
                    .collect();
                return json!({ "claims": claims });
            }
        };
        let mut seen = HashSet::new();
        let items: Vec<Value> = parts
            .into_iter()
            .flat_map(|p| match p.get(field) {
                Some(Value::Array(items)) => items.clone(),
                _ => Vec::new(),
            })
            .filter(|item| {
                let key: String = item[identity]
                    .as_str()
                    .unwrap_or_default()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .to_lowercase();
                seen.insert(key)
            })
            .collect();
        json!({ field: items })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_parse_and_labels_apply() {
        for t in [Task::Summary, Task::Risks, Task::ActionItems, Task::Answer] {
            assert!(t.schema().is_object(), "{}", t.name());
        }
        let c = Task::Classify(vec!["memo".into(), "contract".into()]);
        assert_eq!(
            c.schema()["properties"]["doc_type"]["enum"],
            json!(["memo", "contract"])
        );
        assert_ne!(
            c.prompt_version(),
            Task::Classify(vec!["memo".into()]).prompt_version()
        );
    }

    #[test]
    fn merge_dedupes_across_parts() {
        let a = json!({"risks": [{"title": "Vendor  delay"}, {"title": "Budget"}]});
        let b = json!({"risks": [{"title": "vendor delay"}, {"title": "Security"}]});
        let merged = Task::Risks.merge(vec![a, b]);
        let titles: Vec<&str> = merged["risks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["title"].as_str().unwrap())
            .collect();
        assert_eq!(titles, ["Vendor  delay", "Budget", "Security"]);
    }
}
