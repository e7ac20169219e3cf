//! The Arrow Flight SQL door: statements, prepared statements with
//! parameters, and the catalog calls (`GetCatalogs`, `GetDbSchemas`,
//! `GetTables`, `GetTableTypes`, `GetSqlInfo`), in the caller's scoped
//! session. Results stream batch by batch as they are computed.
//!
//! The server keeps no state between calls: a statement's ticket is its
//! SQL, and a prepared statement's handle carries its SQL and the
//! parameters bound to it, so any call can land on any server.

use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementIngest, CommandStatementQuery,
    CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse,
    IpcMessage, SchemaAsIpc, Ticket,
};
use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::arrow::ipc::writer::IpcWriteOptions;
use deltalake::datafusion::common::ScalarValue;
use deltalake::datafusion::error::DataFusionError;
use futures::{Stream, TryStreamExt};
use prost::Message;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tonic::metadata::MetadataValue;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

use super::gate::{Gate, Pass, Refusal};
use super::plain_arrow::{plain_schema, plain_stream};
use super::sessions::Sessions;
use super::tokens::{authorization_token, Access, Tokens};
use crate::analytics::query::{Analytics, READ_ONLY};

/// Arrow Flight SQL over the lake's session.
pub struct FlightDoor {
    pub sessions: Arc<Sessions>,
    /// `None`: every caller sees everything (loopback only).
    pub tokens: Option<Arc<Tokens>>,
    pub gate: Arc<Gate>,
}

/// Serves `door` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    door: FlightDoor,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let service = FlightServiceServer::new(Flight(Arc::new(door)))
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(
            // Without it, a small answer waits on the client's delayed ACK.
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await?;
    Ok(())
}

#[derive(Clone)]
struct Flight(Arc<FlightDoor>);

/// A prepared statement as its handle carries it.
#[derive(Serialize, Deserialize)]
struct Prepared {
    sql: String,
    /// The bound parameters: one row, as an Arrow IPC stream.
    #[serde(default, with = "hex_bytes")]
    parameters: Vec<u8>,
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        hex::decode(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl Prepared {
    fn handle(&self) -> Result<bytes::Bytes, Status> {
        serde_json::to_vec(self)
            .map(Into::into)
            .map_err(|e| Status::internal(e.to_string()))
    }

    fn of(handle: &[u8]) -> Result<Self, Status> {
        serde_json::from_slice(handle).map_err(|_| {
            Status::invalid_argument(
                "not a prepared statement handle of this server; prepare the statement again",
            )
        })
    }

    fn values(&self) -> Result<Vec<ScalarValue>, Status> {
        if self.parameters.is_empty() {
            return Ok(Vec::new());
        }
        let reader =
            deltalake::arrow::ipc::reader::StreamReader::try_new(self.parameters.as_slice(), None)
                .map_err(|e| Status::invalid_argument(format!("bad parameters: {e}")))?;
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Status::invalid_argument(format!("bad parameters: {e}")))?;
        let Some(batch) = batches.first() else {
            return Ok(Vec::new());
        };
        (0..batch.num_columns())
            .map(|i| ScalarValue::try_from_array(batch.column(i), 0))
            .collect::<Result<_, _>>()
            .map_err(|e| Status::invalid_argument(format!("bad parameters: {e}")))
    }
}

/// What the server says about itself in `GetSqlInfo`.
fn sql_info() -> Result<SqlInfoData, Status> {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "docstream");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
    b.append(SqlInfo::FlightSqlServerReadOnly, true);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(SqlInfo::FlightSqlServerTransaction, 0i32);
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, false);
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.build().map_err(|e| Status::internal(e.to_string()))
}

fn refused(r: &Refusal) -> Status {
    match r {
        Refusal::TimedOut(_) => Status::deadline_exceeded(r.explained()),
        Refusal::Busy(_) | Refusal::TooLarge(_) => Status::resource_exhausted(r.explained()),
    }
}

fn planning(e: anyhow::Error) -> Status {
    Status::invalid_argument(format!("{e:#}"))
}

type FlightStream = Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send>>;

impl Flight {
    /// Who the request comes from: its bearer token, or basic auth with
    /// the token as the password.
    fn access<T>(&self, request: &Request<T>) -> Result<Access, Status> {
        let Some(tokens) = &self.0.tokens else {
            return Ok(Access::All);
        };
        let token = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(authorization_token)
            .ok_or_else(|| {
                Status::unauthenticated(
                    "no token: connect with a bearer token, or basic auth with the token as the password",
                )
            })?;
        tokens
            .access(&token)
            .cloned()
            .ok_or_else(|| Status::unauthenticated("unknown token"))
    }

    async fn session<T>(&self, request: &Request<T>) -> Result<(Access, Arc<Analytics>), Status> {
        let access = self.access(request)?;
        let session = self.0.sessions.open(&access).await.map_err(|e| {
            tracing::warn!(error = %format!("{e:#}"), "cannot open the lake for a Flight SQL call");
            Status::unavailable("cannot open the lake; the server's log says why")
        })?;
        Ok((access, session))
    }

    /// A `FlightInfo` whose one endpoint's ticket is `ticket`.
    fn info(
        schema: &Schema,
        ticket: impl ProstMessageExt,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let endpoint =
            FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec()));
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| Status::internal(e.to_string()))?
            .with_endpoint(endpoint)
            .with_descriptor(descriptor);
        Ok(Response::new(info))
    }

    /// The schema `sql` answers with, within the gate's limits.
    async fn describe<T>(&self, request: &Request<T>, sql: &str) -> Result<Schema, Status> {
        let pass = self.0.gate.admit().map_err(|r| refused(&r))?;
        let (_, session) = self.session(request).await?;
        let described = self
            .0
            .gate
            .within(&pass, session.describe(sql))
            .await
            .map_err(|r| refused(&r))?
            .map_err(planning)?;
        Ok(plain_schema(&described.schema))
    }

    /// Runs `sql` and streams its rows as Flight data.
    async fn rows<T>(
        &self,
        request: &Request<T>,
        sql: &str,
        parameters: Vec<ScalarValue>,
    ) -> Result<Response<FlightStream>, Status> {
        let pass: Pass = self.0.gate.admit().map_err(|r| refused(&r))?;
        let (access, session) = self.session(request).await?;
        let stream = self
            .0
            .gate
            .within(&pass, session.stream_with(sql, parameters))
            .await
            .map_err(|r| refused(&r))?
            .map_err(planning)?;
        // Plain before the gate, so the result size it bounds is what is sent.
        let stream = plain_stream(stream);
        let schema = stream.schema();
        let tenant = access.tenant().is_some();
        let rows = self
            .0
            .gate
            .bound(pass, stream)
            .map_err(move |e| FlightError::Tonic(Box::new(run_error(tenant, e))));
        let data = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(rows)
            .map_err(Status::from);
        Ok(Response::new(Box::pin(data)))
    }
}

/// An error while rows were read. Its text can quote values of rows the
/// tenant filter would drop, so tenants get the kind only.
fn run_error(tenant: bool, e: DataFusionError) -> Status {
    if let Some(r) = Refusal::of(&e) {
        return refused(r);
    }
    if tenant {
        tracing::info!(error = %e, "a tenant's Flight SQL query failed while running");
        return Status::invalid_argument(
            "the query failed while reading rows (the details are in the server's log); check types and casts, TRY_CAST gives NULL instead of failing",
        );
    }
    Status::invalid_argument(format!("the query failed: {e}"))
}

/// One batch as a Flight data stream.
fn one_batch(batch: Result<RecordBatch, FlightError>) -> Result<Response<FlightStream>, Status> {
    let batch = batch.map_err(Status::from)?;
    let data = FlightDataEncoderBuilder::new()
        .with_schema(batch.schema())
        .build(futures::stream::once(async { Ok(batch) }))
        .map_err(Status::from);
    Ok(Response::new(Box::pin(data)))
}

#[tonic::async_trait]
impl FlightSqlService for Flight {
    type FlightService = Flight;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        self.access(&request)?;
        let token = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(authorization_token)
            .unwrap_or_default();
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into(),
        };
        let mut response: Response<Pin<Box<dyn Stream<Item = _> + Send>>> =
            Response::new(Box::pin(futures::stream::iter([Ok(reply)])));
        if !token.is_empty() {
            let bearer = MetadataValue::try_from(format!("Bearer {token}"))
                .map_err(|_| Status::invalid_argument("the token is not a valid header value"))?;
            response.metadata_mut().insert("authorization", bearer);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = self.describe(&request, &query.query).await?;
        let ticket = TicketStatementQuery {
            statement_handle: query.query.into_bytes().into(),
        };
        Self::info(&schema, ticket, request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<FlightStream>, Status> {
        let sql = String::from_utf8(ticket.statement_handle.to_vec()).map_err(|_| {
            Status::invalid_argument("the ticket is not a statement of this server")
        })?;
        self.rows(&request, &sql, Vec::new()).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let pass = self.0.gate.admit().map_err(|r| refused(&r))?;
        let (_, session) = self.session(&request).await?;
        let described = self
            .0
            .gate
            .within(&pass, session.describe(&query.query))
            .await
            .map_err(|r| refused(&r))?
            .map_err(planning)?;
        let parameters = Schema::new(
            described
                .parameters
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    Field::new(
                        format!("${}", i + 1),
                        t.clone().unwrap_or(DataType::Null),
                        true,
                    )
                })
                .collect::<Vec<_>>(),
        );
        let encode = |schema: &Schema| -> Result<bytes::Bytes, Status> {
            let ipc: IpcMessage = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
                .try_into()
                .map_err(|e: deltalake::arrow::error::ArrowError| {
                    Status::internal(e.to_string())
                })?;
            Ok(ipc.0)
        };
        let handle = Prepared {
            sql: query.query,
            parameters: Vec::new(),
        };
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.handle()?,
            dataset_schema: encode(&plain_schema(&described.schema))?,
            parameter_schema: encode(&parameters)?,
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        self.access(&request)?;
        let mut prepared = Prepared::of(&query.prepared_statement_handle)?;
        let batches: Vec<RecordBatch> =
            arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(
                request.into_inner().map_err(FlightError::from),
            )
            .try_collect()
            .await
            .map_err(|e| Status::invalid_argument(format!("cannot read the parameters: {e}")))?;
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if rows > 1 {
            return Err(Status::invalid_argument(format!(
                "{rows} rows of parameters were bound; bind one row per execution"
            )));
        }
        prepared.parameters = match batches.iter().find(|b| b.num_rows() == 1) {
            Some(batch) => {
                let mut out = Vec::new();
                let mut w =
                    deltalake::arrow::ipc::writer::StreamWriter::try_new(&mut out, &batch.schema())
                        .map_err(|e| Status::internal(e.to_string()))?;
                w.write(batch)
                    .map_err(|e| Status::internal(e.to_string()))?;
                w.finish().map_err(|e| Status::internal(e.to_string()))?;
                drop(w);
                out
            }
            None => Vec::new(),
        };
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(prepared.handle()?),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let prepared = Prepared::of(&query.prepared_statement_handle)?;
        let schema = self.describe(&request, &prepared.sql).await?;
        Self::info(&schema, query, request.into_inner())
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<FlightStream>, Status> {
        let prepared = Prepared::of(&query.prepared_statement_handle)?;
        let values = prepared.values()?;
        self.rows(&request, &prepared.sql, values).await
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        // Nothing is kept for a prepared statement.
        self.access(&request).map(|_| ())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.access(&request)?;
        let schema = query.into_builder().schema();
        Self::info(&schema, query, request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<FlightStream>, Status> {
        let (_, session) = self.session(&request).await?;
        let mut builder = query.into_builder();
        builder.append(session.namespace().0);
        one_batch(builder.build())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.access(&request)?;
        let schema = query.clone().into_builder().schema();
        Self::info(&schema, query, request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<FlightStream>, Status> {
        let (_, session) = self.session(&request).await?;
        let (catalog, schema) = session.namespace();
        let mut builder = query.into_builder();
        builder.append(catalog, schema);
        one_batch(builder.build())
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.access(&request)?;
        let schema = query.clone().into_builder().schema();
        Self::info(&schema, query, request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<FlightStream>, Status> {
        let (_, session) = self.session(&request).await?;
        let (catalog, schema) = session.namespace();
        let tables = session.table_schemas().await.map_err(planning)?;
        let mut builder = query.into_builder();
        for (name, columns) in tables {
            builder
                .append(&catalog, &schema, &name, table_type(&name), &columns)
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        one_batch(builder.build())
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.access(&request)?;
        let schema = query.into_builder().schema();
        Self::info(&schema, query, request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<FlightStream>, Status> {
        self.access(&request)?;
        let mut builder = query.into_builder();
        builder.append("TABLE");
        builder.append("VIEW");
        one_batch(builder.build())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.access(&request)?;
        let info = sql_info()?;
        let schema = query.clone().into_builder(&info).schema();
        Self::info(schema.as_ref(), query, request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<FlightStream>, Status> {
        self.access(&request)?;
        one_batch(query.into_builder(&sql_info()?).build())
    }

    async fn do_put_statement_update(
        &self,
        _ticket: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.access(&request)?;
        Err(Status::invalid_argument(READ_ONLY))
    }

    async fn do_put_prepared_statement_update(
        &self,
        _query: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.access(&request)?;
        Err(Status::invalid_argument(READ_ONLY))
    }

    async fn do_put_statement_ingest(
        &self,
        _ticket: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.access(&request)?;
        Err(Status::invalid_argument(READ_ONLY))
    }

    async fn do_get_fallback(
        &self,
        _request: Request<Ticket>,
        message: Any,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Err(Status::unimplemented(format!(
            "docstream's Flight SQL door does not answer {}; it runs statements, prepared statements and the catalog calls",
            message.type_url
        )))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// How a table of the session is listed: the lake's tables, and the view
/// of current document versions.
fn table_type(name: &str) -> &'static str {
    match name {
        "current_documents" => "VIEW",
        _ => "TABLE",
    }
}
