//! Postgres queries, simple and extended (prepared, with parameters, text
//! or binary results), run in the connection's scoped session under the
//! gate's limits. SQL is first rewritten for DataFusion the way psql and
//! BI tools write it (`OPERATOR(pg_catalog.~)`, `::regclass`, ...), and
//! `pg_catalog` answers their introspection.

use std::fmt::Debug;
use std::sync::Arc;

use arrow_pg::datatypes::df::deserialize_parameters;
use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch, into_pg_type};
use async_trait::async_trait;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use deltalake::arrow::datatypes::{DataType, SchemaRef};
use deltalake::datafusion::common::ScalarValue;
use deltalake::datafusion::error::DataFusionError;
use futures::{Sink, StreamExt};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, QueryResponse, Response};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::types::format::FormatOptions;

use super::gate::{Gate, Refusal};
use super::pg_commands::{self, Command};
use super::pg_rewrites::PgRewrites;
use super::sessions::Sessions;
use super::tokens::Access;
use crate::analytics::query::{Analytics, READ_ONLY};

/// A parsed statement: SQL for the session, or a session command.
#[derive(Debug, Clone)]
pub enum PgStatement {
    Query {
        sql: String,
        schema: SchemaRef,
        parameters: Vec<Option<DataType>>,
    },
    Command(Command),
}

pub struct PgQueries {
    parser: Arc<PgParser>,
    gate: Arc<Gate>,
}

impl PgQueries {
    pub fn new(sessions: Arc<Sessions>, gate: Arc<Gate>) -> Self {
        Self {
            parser: Arc::new(PgParser {
                sessions,
                rewriter: PostgresCompatibilityParser::new(),
                rewrites: PgRewrites::default(),
            }),
            gate,
        }
    }

    /// Runs `sql` with `parameters`; its rows, encoded as `format` asks.
    async fn run<C: ClientInfo>(
        &self,
        client: &C,
        sql: &str,
        parameters: Vec<ScalarValue>,
        format: &Format,
    ) -> PgWireResult<Response> {
        let pass = self.gate.admit().map_err(|r| refused(&r))?;
        let (access, session) = self.parser.session(client).await?;
        let stream = self
            .gate
            .within(&pass, session.stream_with(sql, parameters))
            .await
            .map_err(|r| refused(&r))?
            .map_err(|e| user_error("42601", &format!("{e:#}")))?;
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        let fields = Arc::new(arrow_schema_to_pg_fields(
            &stream.schema(),
            format,
            Some(options),
        )?);
        let tenant = access.tenant().is_some();
        let encode = fields.clone();
        let rows = self.gate.bound(pass, stream).flat_map(move |batch| {
            let rows: Box<dyn Iterator<Item = PgWireResult<_>> + Send + Sync> = match batch {
                Ok(batch) => encode_recordbatch(encode.clone(), batch),
                Err(e) => Box::new(std::iter::once(Err(run_error(tenant, e)))),
            };
            futures::stream::iter(rows)
        });
        Ok(Response::Query(QueryResponse::new(fields, rows)))
    }
}

fn user_error(code: &str, message: &str) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        code.into(),
        message.into(),
    )))
}

fn refused(r: &Refusal) -> PgWireError {
    let code = match r {
        Refusal::Busy(_) => "53300",
        Refusal::TimedOut(_) => "57014",
        Refusal::TooLarge(_) => "54000",
    };
    user_error(code, &r.explained())
}

/// An error while rows were read. Its text can quote values of rows the
/// tenant filter would drop, so tenants get the kind only.
fn run_error(tenant: bool, e: DataFusionError) -> PgWireError {
    if let Some(r) = Refusal::of(&e) {
        return refused(r);
    }
    if tenant {
        tracing::info!(error = %e, "a tenant's Postgres query failed while running");
        return user_error(
            "22000",
            "the query failed while reading rows (the details are in the server's log); check types and casts, TRY_CAST gives NULL instead of failing",
        );
    }
    user_error("22000", &format!("the query failed: {e}"))
}

/// One statement of what a client sent.
enum Piece {
    Command(Command),
    /// SQL for the session, as DataFusion plans it.
    Sql(String),
}

/// Turns SQL into statements, each planned in the connection's session so
/// a prepared statement can describe its columns and parameters.
pub struct PgParser {
    sessions: Arc<Sessions>,
    rewriter: PostgresCompatibilityParser,
    rewrites: PgRewrites,
}

impl PgParser {
    /// The connection's access, set at startup, and its session.
    async fn session<C: ClientInfo>(&self, client: &C) -> PgWireResult<(Access, Arc<Analytics>)> {
        let access = client
            .session_extensions()
            .get::<Access>()
            .map(|a| (*a).clone())
            .ok_or_else(|| user_error("28000", "the connection has not logged in"))?;
        let session = self.sessions.open(&access).await.map_err(|e| {
            tracing::warn!(error = %format!("{e:#}"), "cannot open the lake for a Postgres query");
            user_error("58000", "cannot open the lake; the server's log says why")
        })?;
        Ok((access, session))
    }

    /// `sql` as statements DataFusion plans, or session commands.
    fn split(&self, sql: &str) -> PgWireResult<Vec<PgWireResult<Piece>>> {
        let statements = self.rewriter.parse(sql).map_err(|e| {
            // Postgres's grammar lacks DataFusion's DDL (`CREATE EXTERNAL
            // TABLE`): a write is refused as a write, not as a typo.
            let first = sql.split_whitespace().next().unwrap_or_default();
            match WRITE_KEYWORDS.iter().any(|k| first.eq_ignore_ascii_case(k)) {
                true => user_error("25006", READ_ONLY),
                false => user_error("42601", &e.to_string()),
            }
        })?;
        Ok(statements
            .into_iter()
            .map(|s| {
                let s = self.rewrites.rewrite(s);
                let text = s.to_string();
                match pg_commands::command(&text) {
                    Some(command) => command.map(Piece::Command),
                    None if is_write(&s) => Err(user_error("25006", READ_ONLY)),
                    None => Ok(Piece::Sql(text)),
                }
            })
            .collect())
    }
}

/// First words of statements that change something.
const WRITE_KEYWORDS: [&str; 10] = [
    "insert", "update", "delete", "merge", "create", "drop", "alter", "truncate", "copy", "grant",
];

/// Statements the session would refuse anyway, refused before planning
/// with the same answer (COPY in particular never reaches DataFusion).
fn is_write(s: &deltalake::datafusion::sql::sqlparser::ast::Statement) -> bool {
    use deltalake::datafusion::sql::sqlparser::ast::Statement as S;
    matches!(
        s,
        S::Copy { .. } | S::Insert(_) | S::Update { .. } | S::Delete(_) | S::Truncate { .. }
    )
}

#[async_trait]
impl QueryParser for PgParser {
    type Statement = PgStatement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<PgStatement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut statements = self.split(sql)?;
        if statements.len() > 1 {
            return Err(user_error(
                "42601",
                "a prepared statement holds one statement; send the others separately",
            ));
        }
        let Some(statement) = statements.pop() else {
            return Ok(None);
        };
        match statement? {
            Piece::Command(command) => Ok(Some(PgStatement::Command(command))),
            Piece::Sql(sql) => {
                let (_, session) = self.session(client).await?;
                let described = session
                    .describe(&sql)
                    .await
                    .map_err(|e| user_error("42601", &format!("{e:#}")))?;
                Ok(Some(PgStatement::Query {
                    sql,
                    schema: described.schema,
                    parameters: described.parameters,
                }))
            }
        }
    }

    fn get_parameter_types(&self, stmt: &PgStatement) -> PgWireResult<Vec<Type>> {
        match stmt {
            PgStatement::Query { parameters, .. } => parameters
                .iter()
                .map(|t| t.as_ref().map_or(Ok(Type::UNKNOWN), into_pg_type))
                .collect(),
            PgStatement::Command(_) => Ok(Vec::new()),
        }
    }

    fn get_result_schema(
        &self,
        stmt: &PgStatement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        match stmt {
            PgStatement::Query { schema, .. } => arrow_schema_to_pg_fields(
                schema,
                column_format.unwrap_or(&Format::UnifiedText),
                None,
            ),
            PgStatement::Command(c) => Ok(pg_commands::fields(c)),
        }
    }
}

#[async_trait]
impl SimpleQueryHandler for PgQueries {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut responses = Vec::new();
        for statement in self.parser.split(query)? {
            let response = match statement? {
                Piece::Command(command) => pg_commands::respond(&command)?,
                Piece::Sql(sql) => {
                    self.run(client, &sql, Vec::new(), &Format::UnifiedText)
                        .await?
                }
            };
            responses.push(response);
        }
        if responses.is_empty() {
            responses.push(Response::EmptyQuery);
        }
        Ok(responses)
    }
}

#[async_trait]
impl ExtendedQueryHandler for PgQueries {
    type Statement = PgStatement;
    type QueryParser = PgParser;

    fn query_parser(&self) -> Arc<PgParser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<PgStatement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PgStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match &portal.statement.statement {
            PgStatement::Command(command) => pg_commands::respond(command),
            PgStatement::Query {
                sql, parameters, ..
            } => {
                let types: Vec<Option<&DataType>> = parameters.iter().map(Option::as_ref).collect();
                let values = match deserialize_parameters(portal, &types)? {
                    deltalake::datafusion::common::ParamValues::List(values) => {
                        values.into_iter().map(|v| v.into_inner().0).collect()
                    }
                    deltalake::datafusion::common::ParamValues::Map(_) => {
                        return Err(user_error("42P02", "parameters are numbered: $1, $2, ..."))
                    }
                };
                self.run(client, sql, values, &portal.result_column_format)
                    .await
            }
        }
    }
}
