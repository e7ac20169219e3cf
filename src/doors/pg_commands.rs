//! The session commands Postgres drivers send around their queries:
//! transactions, `SET` of client settings, `SHOW`, `DISCARD`. The lake is
//! read-only and a session has nothing to roll back, so transactions and
//! client settings are acknowledged without effect; setting the engine
//! (`datafusion.*`) is refused like every write.

use std::sync::Arc;

use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::Type;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};

use crate::analytics::query::READ_ONLY;

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Begin,
    Commit,
    Rollback,
    /// A client setting, acknowledged.
    Set,
    /// A setting a driver asks for, with the value docstream answers.
    Show {
        name: String,
        value: String,
    },
    /// `DISCARD`, `RESET`, `DEALLOCATE`, savepoints: nothing is kept.
    Forget(&'static str),
}

/// What Postgres answers for the settings drivers read.
fn setting(name: &str) -> Option<&'static str> {
    Some(match name {
        "server_version" => "16.6",
        "server_version_num" => "160006",
        "server_encoding" | "client_encoding" => "UTF8",
        "standard_conforming_strings" | "integer_datetimes" => "on",
        "datestyle" => "ISO, MDY",
        "intervalstyle" => "postgres",
        "timezone" => "UTC",
        "search_path" => "public",
        "transaction_isolation"
        | "transaction isolation level"
        | "default_transaction_isolation" => "read committed",
        "transaction_read_only" | "default_transaction_read_only" => "on",
        "max_identifier_length" => "63",
        "lc_collate" | "lc_ctype" => "C.UTF-8",
        _ => return None,
    })
}

/// The session command `sql` is, if it is one; `Err` for one refused.
pub fn command(sql: &str) -> Option<PgWireResult<Command>> {
    let words: Vec<String> = sql
        .trim()
        .trim_end_matches(';')
        .split_whitespace()
        .map(str::to_ascii_lowercase)
        .collect();
    let first = words.first()?.as_str();
    let command = match first {
        "begin" | "start" => Command::Begin,
        "commit" | "end" => Command::Commit,
        // Savepoints: nothing to keep or undo, and the transaction goes on.
        "rollback" if words.get(1).is_some_and(|w| w == "to") => Command::Forget("ROLLBACK"),
        "rollback" | "abort" => Command::Rollback,
        "savepoint" => Command::Forget("SAVEPOINT"),
        "release" => Command::Forget("RELEASE"),
        "discard" => Command::Forget("DISCARD ALL"),
        "reset" => Command::Forget("RESET"),
        "deallocate" => Command::Forget("DEALLOCATE"),
        "set" => {
            let name = words
                .iter()
                .skip(1)
                .find(|w| !["session", "local"].contains(&w.as_str()))
                .map(|w| w.split('=').next().unwrap_or_default().to_string())
                .unwrap_or_default();
            if name.starts_with("datafusion.") {
                return Some(Err(refused()));
            }
            Command::Set
        }
        "show" => {
            let name = words[1..].join(" ");
            let value = setting(&name)?;
            Command::Show {
                name,
                value: value.to_string(),
            }
        }
        _ => return None,
    };
    Some(Ok(command))
}

fn refused() -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        "25006".into(),
        READ_ONLY.into(),
    )))
}

/// The answer to `command`.
pub fn respond(command: &Command) -> PgWireResult<Response> {
    Ok(match command {
        Command::Begin => Response::TransactionStart(Tag::new("BEGIN")),
        Command::Commit => Response::TransactionEnd(Tag::new("COMMIT")),
        Command::Rollback => Response::TransactionEnd(Tag::new("ROLLBACK")),
        Command::Set => Response::Execution(Tag::new("SET")),
        Command::Forget(tag) => Response::Execution(Tag::new(tag)),
        Command::Show { name, value } => {
            let fields = Arc::new(vec![FieldInfo::new(
                name.clone(),
                None,
                None,
                Type::TEXT,
                FieldFormat::Text,
            )]);
            let mut row = DataRowEncoder::new(fields.clone());
            row.encode_field(value)?;
            let rows = futures::stream::iter([Ok(row.take_row())]);
            Response::Query(QueryResponse::new(fields, rows))
        }
    })
}

/// The columns `command` answers with.
pub fn fields(command: &Command) -> Vec<FieldInfo> {
    match command {
        Command::Show { name, .. } => vec![FieldInfo::new(
            name.clone(),
            None,
            None,
            Type::TEXT,
            FieldFormat::Text,
        )],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drivers_commands_are_recognised_and_engine_settings_refused() {
        assert_eq!(command("BEGIN").unwrap().unwrap(), Command::Begin);
        assert_eq!(command("commit;").unwrap().unwrap(), Command::Commit);
        assert_eq!(
            command("SAVEPOINT \"_pg3_1\"").unwrap().unwrap(),
            Command::Forget("SAVEPOINT")
        );
        assert_eq!(
            command("ROLLBACK TO SAVEPOINT x").unwrap().unwrap(),
            Command::Forget("ROLLBACK")
        );
        assert_eq!(command("ROLLBACK").unwrap().unwrap(), Command::Rollback);
        assert_eq!(
            command("SET extra_float_digits = 3").unwrap().unwrap(),
            Command::Set
        );
        assert_eq!(
            command("SET SESSION application_name TO 'x'")
                .unwrap()
                .unwrap(),
            Command::Set
        );
        assert!(command("SET datafusion.execution.batch_size = 1")
            .unwrap()
            .is_err());
        assert!(command("set datafusion.execution.batch_size=1")
            .unwrap()
            .is_err());
        assert_eq!(
            command("show transaction isolation level")
                .unwrap()
                .unwrap(),
            Command::Show {
                name: "transaction isolation level".into(),
                value: "read committed".into()
            }
        );
        // Not a session command: planned (and answered) as SQL.
        assert!(command("SHOW datafusion.execution.batch_size").is_none());
        assert!(command("SELECT 1").is_none());
        assert!(command("").is_none());
    }
}
