//! Which offsets each table already holds, per topic partition, in the way
//! kafka-delta-ingest keeps them: every table commit of a micro-batch
//! carries a Delta `txn` action per partition in the batch, with app id
//! `docstream:<pipeline>:<topic>:<partition>` and version = the batch's last
//! offset of that partition.
//!
//! This module owns those markers: their app ids, reading them, where an
//! assigned partition starts, and the fencing check before each commit.
//! Kafka's committed offsets are only a hint for tools.

use std::collections::{BTreeMap, HashMap};

use anyhow::Result;
use deltalake::kernel::Transaction;

use crate::sinks::lake::Lake;

/// Markers per (table, partition), as this worker last saw or wrote them.
pub type Landed = HashMap<(String, i32), i64>;

/// Another writer committed markers for a partition this worker was about
/// to commit: it owns the partition now.
#[derive(Debug, thiserror::Error)]
#[error(
    "partition {partition} of topic {topic} moved on in table {table} (marker {now:?}, this worker expected {ours:?}): another worker owns it now. \
     This worker stopped so nothing lands twice; restart it and it resumes from the lake"
)]
pub struct PartitionMovedOn {
    pub topic: String,
    pub partition: i32,
    pub table: String,
    pub now: Option<i64>,
    pub ours: Option<i64>,
}

/// The markers of one pipeline reading one topic.
#[derive(Debug, Clone)]
pub struct Offsets {
    pipeline: String,
    topic: String,
}

impl Offsets {
    pub fn new(pipeline: &str, topic: &str) -> Self {
        Self {
            pipeline: pipeline.to_string(),
            topic: topic.to_string(),
        }
    }

    /// The app id of one partition's markers.
    pub fn app_id(&self, partition: i32) -> String {
        format!("docstream:{}:{}:{partition}", self.pipeline, self.topic)
    }

    /// The markers `tables` hold for `partitions`.
    pub async fn read(
        &self,
        lake: &mut Lake,
        tables: &[String],
        partitions: &[i32],
    ) -> Result<Landed> {
        let ids: Vec<String> = partitions.iter().map(|p| self.app_id(*p)).collect();
        let mut read = Landed::new();
        for table in tables {
            let markers = lake.markers(table, &ids).await?;
            for (p, id) in partitions.iter().zip(&ids) {
                if let Some(v) = markers.get(id) {
                    read.insert((table.clone(), *p), *v);
                }
            }
        }
        Ok(read)
    }

    /// Where each partition starts: one past the oldest marker of any
    /// table (a table without a marker counts as holding nothing), or
    /// `None` when no table has one.
    pub fn starts(
        read: &Landed,
        tables: &[String],
        partitions: &[i32],
    ) -> HashMap<i32, Option<i64>> {
        partitions
            .iter()
            .map(|p| {
                let marks: Vec<Option<i64>> = tables
                    .iter()
                    .map(|t| read.get(&(t.clone(), *p)).copied())
                    .collect();
                let start = if marks.iter().all(Option::is_none) {
                    None
                } else {
                    Some(marks.iter().map(|m| m.unwrap_or(-1)).min().unwrap_or(-1) + 1)
                };
                (*p, start)
            })
            .collect()
    }

    /// Checks that `table`'s markers for the batch's partitions are still the
    /// ones this worker last saw, then returns the batch's new markers.
    pub async fn fence(
        &self,
        lake: &mut Lake,
        landed: &Landed,
        table: &str,
        last: &BTreeMap<i32, i64>,
    ) -> Result<Vec<Transaction>> {
        let ids: Vec<String> = last.keys().map(|p| self.app_id(*p)).collect();
        let current = lake.markers(table, &ids).await?;
        for (p, id) in last.keys().zip(&ids) {
            let ours = landed.get(&(table.to_string(), *p)).copied();
            let now = current.get(id).copied();
            if now != ours {
                return Err(PartitionMovedOn {
                    topic: self.topic.clone(),
                    partition: *p,
                    table: table.to_string(),
                    now,
                    ours,
                }
                .into());
            }
        }
        Ok(last
            .iter()
            .zip(&ids)
            .map(|((_, offset), id)| Transaction::new(id, *offset))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_starts_after_the_oldest_table_marker() {
        let tables = vec!["chunks".to_string(), "documents".to_string()];
        let read: Landed = [
            (("chunks".to_string(), 0), 41),
            (("documents".to_string(), 0), 40),
            (("chunks".to_string(), 1), 7),
        ]
        .into();
        let starts = Offsets::starts(&read, &tables, &[0, 1, 2]);
        assert_eq!(starts[&0], Some(41), "documents holds up to 40");
        assert_eq!(
            starts[&1],
            Some(0),
            "documents holds nothing of partition 1"
        );
        assert_eq!(starts[&2], None, "no marker anywhere");
        assert_eq!(Offsets::new("p", "t").app_id(3), "docstream:p:t:3");
    }
}
