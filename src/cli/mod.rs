//! Command-line interface: one file per command.

mod arroyo;
mod backfill;
mod ingest;
mod kafka_args;
mod maintenance;
mod models;
mod publish;
mod query;
mod report;
mod search;
mod serve_models;
mod stage_args;
mod watch;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

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
        docstream ingest --brokers localhost:9092 --topic documents --lake ./lake\n  \
        docstream watch s3://inbox/ --brokers localhost:9092 --topic documents\n  \
        docstream query \"SELECT severity, count(*) FROM risks GROUP BY severity\"\n  \
        docstream search \"budget overrun on the data migration\" --k 5\n  \
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
    #[arg(long, global = true, env = "DOCSTREAM_PIPELINE")]
    pub pipeline: Option<PathBuf>,

    /// Endpoint of an S3-compatible server (MinIO, s3s-fs, ...). Credentials
    /// come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION.
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL", value_name = "URL")]
    pub s3_endpoint: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Backfill(backfill::Args),
    Ingest(ingest::Args),
    Watch(watch::Args),
    Publish(publish::Args),
    Query(query::Args),
    Search(search::SearchArgs),
    Ask(search::AskArgs),
    Report(report::Args),
    Optimize(maintenance::OptimizeArgs),
    Vacuum(maintenance::VacuumArgs),
    Models(models::Args),
    ServeModels(serve_models::Args),
    Arroyo(arroyo::Args),
}

impl Cli {
    pub async fn run(self) -> Result<()> {
        let storage = StorageOptions {
            s3_endpoint: self.s3_endpoint.clone(),
        };
        match self.command {
            Command::Backfill(args) => args.run(self.pipeline.as_deref(), storage).await,
            Command::Ingest(args) => args.run(self.pipeline.as_deref(), storage).await,
            Command::Watch(args) => args.run(self.pipeline.as_deref(), storage).await,
            Command::Publish(args) => args.run(self.pipeline.as_deref(), storage).await,
            Command::Query(args) => args.run(self.pipeline.as_deref(), storage).await,
            Command::Arroyo(args) => args.run(self.pipeline.as_deref()).await,
            Command::Search(args) => args.run(self.pipeline.as_deref(), storage).await,
            Command::Ask(args) => args.run(self.pipeline.as_deref(), storage).await,
            Command::Report(args) => args.run(self.pipeline.as_deref(), storage).await,
            Command::Optimize(args) => args.run(self.pipeline.as_deref(), storage).await,
            Command::Vacuum(args) => args.run(self.pipeline.as_deref(), storage).await,
            Command::Models(args) => args.run(self.pipeline.as_deref()),
            Command::ServeModels(args) => args.run(self.pipeline.as_deref()).await,
        }
    }
}
