//! Command-line interface: one file per command.

mod arroyo;
mod backfill;
mod eval;
mod extract_worker;
mod index;
#[cfg(feature = "kafka")]
mod ingest;
#[cfg(feature = "kafka")]
mod kafka_args;
mod maintenance;
mod models;
mod output;
mod plan;
mod progress;
#[cfg(feature = "kafka")]
mod publish;
mod query;
mod report;
mod reprocess;
mod resolved;
mod search;
mod serve;
#[cfg(feature = "local-models")]
mod serve_models;
mod signal;
mod sql_doors;
mod stage_args;
mod terminal;
#[cfg(feature = "kafka")]
mod values;
#[cfg(feature = "kafka")]
mod watch;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use self::resolved::Resolved;
use crate::storage::StorageOptions;

#[derive(Debug, Parser)]
#[command(
    name = "docstream",
    version,
    about = "Turn documents into analytics-ready Delta Lake tables",
    long_about = "docstream extracts text from documents (txt, md, html, pdf, docx), runs SQL \
                  stages with Rust UDFs over them, and lands the results as Delta tables you can \
                  query with SQL.",
    after_help = "Examples:\n  \
        docstream models fetch\n  \
        docstream backfill samples --lake ./lake\n  \
        docstream plan && docstream reprocess --stages summaries\n  \
        docstream ingest --brokers localhost:9092 --topic documents --lake ./lake\n  \
        docstream watch s3://inbox/ --brokers localhost:9092 --topic documents\n  \
        docstream query \"SELECT severity, count(*) FROM risks GROUP BY severity\"\n  \
        docstream index && docstream search \"budget overrun on the data migration\" --k 5\n  \
        docstream serve    # then open http://127.0.0.1:8080/\n  \
        docstream ask \"Which projects have unmitigated security risks, and who owns them?\"\n  \
        docstream report risks-by-week\n  \
        docstream optimize --lake s3://lake/ && docstream vacuum --retain-hours 168\n  \
        docstream arroyo deploy --api http://localhost:5115\n  \
        RUST_LOG=debug docstream backfill s3://archive/2019/ --lake s3://lake/ --s3-endpoint http://127.0.0.1:9000"
)]
pub struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Pipeline file (TOML). Default: the built-in pipelines/default.toml.
    #[arg(
        long,
        global = true,
        env = "DOCSTREAM_PIPELINE",
        hide_env_values = true
    )]
    pub pipeline: Option<PathBuf>,

    /// Lake root: a local folder, or s3:// / gs:// / az://. Default: the pipeline's lake.uri.
    #[arg(long, global = true, value_name = "URI")]
    pub lake: Option<String>,

    /// Override a stage parameter, e.g. chunks.max_tokens=256. Repeatable.
    #[arg(long = "set", global = true, value_name = "STAGE.PARAM=VALUE")]
    pub sets: Vec<String>,

    /// Endpoint of an S3-compatible server (MinIO, s3s-fs, ...). Credentials
    /// come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION.
    #[arg(
        long,
        global = true,
        env = "AWS_ENDPOINT_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub s3_endpoint: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Backfill(backfill::Args),
    #[cfg(feature = "kafka")]
    Ingest(ingest::Args),
    #[cfg(feature = "kafka")]
    Watch(watch::Args),
    #[cfg(feature = "kafka")]
    Publish(publish::Args),
    Plan(plan::Args),
    Reprocess(reprocess::Args),
    Query(query::Args),
    Index(index::Args),
    Eval(eval::Args),
    Search(search::SearchArgs),
    Ask(search::AskArgs),
    Serve(serve::Args),
    Report(report::Args),
    Optimize(maintenance::OptimizeArgs),
    Vacuum(maintenance::VacuumArgs),
    Models(models::Args),
    #[cfg(feature = "local-models")]
    ServeModels(serve_models::Args),
    Arroyo(arroyo::Args),
    #[command(name = crate::extract::worker::SUBCOMMAND, hide = true)]
    ExtractWorker(extract_worker::Args),
}

impl Cli {
    /// The worker of `extract-worker`, which must run before the async
    /// runtime starts: it is a single-threaded process under a memory cap.
    pub fn as_extract_worker(&self) -> Option<&extract_worker::Args> {
        match &self.command {
            Command::ExtractWorker(args) => Some(args),
            _ => None,
        }
    }

    pub async fn run(self) -> Result<()> {
        let storage = StorageOptions {
            s3_endpoint: self.s3_endpoint.clone(),
        };
        let resolved = Resolved::new(
            self.pipeline.as_deref(),
            &self.sets,
            self.lake.as_deref(),
            storage,
        )?;
        match self.command {
            Command::Backfill(args) => args.run(resolved).await,
            #[cfg(feature = "kafka")]
            Command::Ingest(args) => args.run(resolved).await,
            #[cfg(feature = "kafka")]
            Command::Watch(args) => args.run(resolved).await,
            #[cfg(feature = "kafka")]
            Command::Publish(args) => args.run(resolved).await,
            Command::Plan(args) => args.run(resolved).await,
            Command::Reprocess(args) => args.run(resolved).await,
            Command::Query(args) => args.run(resolved).await,
            Command::Arroyo(args) => args.run(resolved).await,
            Command::Index(args) => args.run(resolved).await,
            Command::Eval(args) => args.run(resolved).await,
            Command::Search(args) => args.run(resolved).await,
            Command::Ask(args) => args.run(resolved).await,
            Command::Serve(args) => args.run(resolved).await,
            Command::Report(args) => args.run(resolved).await,
            Command::Optimize(args) => args.run(resolved).await,
            Command::Vacuum(args) => args.run(resolved).await,
            Command::Models(args) => args.run(resolved),
            #[cfg(feature = "local-models")]
            Command::ServeModels(args) => args.run(resolved).await,
            Command::ExtractWorker(args) => args.run(),
        }
    }
}
