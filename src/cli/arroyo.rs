//! `docstream arroyo`: run the document pipeline on an Arroyo cluster.

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};

use super::resolved::Resolved;
use crate::jobs::arroyo_deploy::{deploy, Settings};

#[derive(Debug, Parser)]
#[command(about = "Run the document pipeline on an Arroyo cluster instead of docstream's workers")]
pub struct Args {
    #[command(subcommand)]
    command: ArroyoCommand,
}

#[derive(Debug, Subcommand)]
enum ArroyoCommand {
    Deploy(DeployArgs),
}

#[derive(Debug, Parser)]
#[command(
    about = "Create the pipeline on Arroyo: sql/arroyo/pipeline.sql plus the UDFs in udfs/arroyo/",
    after_help = "Values come from the pipeline file (Kafka topic, lake, chunking, models); flags override them.\n\n\
Examples:\n  \
docstream arroyo deploy --api http://localhost:5115\n  \
docstream arroyo deploy --api http://arroyo:5115 --pipeline pipelines/compose.toml --parallelism 4\n  \
docstream arroyo deploy --lake s3://docstream/lake --storage-option aws_endpoint=http://minio:9000 --dry-run > pipeline.json"
)]
struct DeployArgs {
    /// Arroyo's API (its port is 5115).
    #[arg(
        long,
        env = "ARROYO_API",
        hide_env_values = true,
        default_value = "http://localhost:5115"
    )]
    api: String,
    /// Pipeline name in Arroyo. Default: the pipeline file's name.
    #[arg(long)]
    name: Option<String>,
    #[arg(long, default_value_t = 1)]
    parallelism: u32,
    /// Kafka bootstrap servers, as Arroyo's workers reach them.
    #[arg(long)]
    brokers: Option<String>,
    #[arg(long)]
    topic: Option<String>,
    /// Delta sink storage option KEY=VALUE (aws_endpoint, aws_region, aws_allow_http, ...); repeatable.
    #[arg(long = "storage-option", value_name = "KEY=VALUE")]
    storage_options: Vec<String>,
    /// Print the request body instead of posting it.
    #[arg(long)]
    dry_run: bool,
}

impl Args {
    pub async fn run(self, r: Resolved) -> Result<()> {
        match self.command {
            ArroyoCommand::Deploy(args) => args.run(r).await,
        }
    }
}

impl DeployArgs {
    async fn run(self, r: Resolved) -> Result<()> {
        let mut settings = Settings::from_pipeline(&r.pipeline);
        if let Some(name) = self.name {
            settings.name = name;
        }
        settings.parallelism = self.parallelism;
        for (key, value) in [("brokers", self.brokers), ("topic", self.topic)] {
            if let Some(v) = value {
                settings
                    .values
                    .insert(key, v.trim_end_matches('/').to_string());
            }
        }
        let options = self
            .storage_options
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
                _ => bail!("--storage-option takes KEY=VALUE, got '{kv}'"),
            })
            .collect::<Result<Vec<_>>>()?;
        settings.set_storage(&options);
        let payload = settings.payload()?;
        if self.dry_run {
            println!("{}", serde_json::to_string_pretty(&payload)?);
            return Ok(());
        }
        let id = deploy(&self.api, &payload).await?;
        println!(
            "created Arroyo pipeline '{}' ({id}) with {} UDFs; watch it at {}",
            settings.name,
            payload["udfs"].as_array().map_or(0, Vec::len),
            self.api.trim_end_matches('/')
        );
        Ok(())
    }
}
