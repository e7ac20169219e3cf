//! Ingest: document events from a Kafka consumer group, through the stages,
//! into the lake, exactly once.
//!
//! Each table commit of a micro-batch carries a transaction marker per
//! partition (see `offsets`). When partitions are assigned, their
//! start offsets come from those markers, inside the rebalance, before any
//! fetch. Before each commit the worker re-reads the table's markers: if
//! another writer moved them, this worker no longer owns the partition and
//! stops rather than write a duplicate. Kafka's committed offsets are only
//! a hint for tools.

pub mod event_batch;
pub mod metrics;
pub mod offsets;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::Utc;
use deltalake::arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use deltalake::arrow::compute::{cast, filter_record_batch};
use deltalake::arrow::datatypes::DataType;
use tokio::sync::mpsc::{Receiver, Sender};
use url::Url;

use self::event_batch::{EventReader, Position, Work};
use self::metrics::Metrics;
use self::offsets::{Landed, Offsets};
use crate::contract::extracted;
use crate::contract::failure::{self, Failure};
use crate::contract::identity::DocKey;
use crate::contract::tables::commit_rank;
use crate::indexes::config::IndexesConfig;
use crate::jobs::stage_runs::{Needed, Policy};
use crate::jobs::upkeep::Upkeep;
use crate::lineage::adopt::adopt;
use crate::lineage::record;
use crate::sinks::lake::{Lake, LakeConfig};
use crate::sources::kafka::{Assignment, GroupConsumer, Record};
use crate::sources::kafka_config::KafkaConfig;
use crate::stages::batcher::{BatchConfig, Batcher};
use crate::stages::runner::{StageOutput, StageRunner};
use crate::storage::StorageOptions;

pub struct Ingest {
    pub kafka: KafkaConfig,
    /// The pipeline's name: part of every marker's app id.
    pub pipeline: String,
    pub lake: Url,
    pub storage: StorageOptions,
    /// `[lake]` settings: checkpoint interval and background compaction.
    pub upkeep: LakeConfig,
    /// `[indexes]`: how often the search indexes catch up in the background.
    pub indexes: IndexesConfig,
    pub batch: BatchConfig,
    pub reader: EventReader,
    pub runner: StageRunner,
    pub metrics: Arc<Metrics>,
    /// Stop once no event arrived for this long (drain a topic, then exit).
    pub exit_when_idle: Option<Duration>,
}

#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub events: usize,
    pub upserts: usize,
    pub deletes: usize,
    pub failures: usize,
    pub batches: usize,
    /// From the first record accepted to the last commit: the busy span.
    pub first_record: Option<Instant>,
    pub last_commit: Option<Instant>,
}

impl Summary {
    /// Events landed per second over the busy span.
    pub fn rate(&self) -> Option<f64> {
        let span = self.last_commit?.duration_since(self.first_record?);
        Some(self.events as f64 / span.as_secs_f64().max(1e-3))
    }
}

/// Next offset to accept per owned partition (`None`: whatever comes first).
type Next = HashMap<i32, Option<i64>>;

/// Work for the committer task, in the order the consumer saw it. The
/// consumer keeps reading the next batch while the committer lands this one.
enum Step {
    Batch(Vec<Record>),
    /// Partitions now ours, with the markers read for them.
    Assigned(Vec<i32>, Landed),
    /// Partitions being taken away; acknowledged once every batch handed
    /// over before it is committed, so the next owner starts after them.
    Revoked(Vec<i32>, tokio::sync::oneshot::Sender<()>),
    Stop,
}

impl Ingest {
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<Summary> {
        self.runner.check().await?;
        let mut lake = Lake::open(&self.lake, &self.storage)
            .await?
            .with_checkpoint_interval(self.upkeep.checkpoint_interval);
        let tables = self.tables();
        let names: Vec<&str> = tables.iter().map(String::as_str).collect();
        adopt(&mut lake, self.runner.stages()).await?;
        lake.create_contract_tables(&names).await?;

        let lake = Arc::new(tokio::sync::Mutex::new(lake));
        let seen = Arc::new(Mutex::new(Landed::new()));
        let (steps, queue) = tokio::sync::mpsc::channel::<Step>(1);
        let consumer = Arc::new(GroupConsumer::subscribe(
            &self.kafka,
            self.start_offsets(lake.clone(), tables, seen.clone()),
            revoke_hook(steps.clone()),
        )?);
        tracing::info!(topic = %self.kafka.topic, group = %self.kafka.group, "consuming");
        let this = Arc::new(self);
        let committer = tokio::spawn(this.clone().commit_loop(queue, lake, consumer.clone()));
        let consumed = this.consume(&consumer, &seen, &steps, shutdown).await;
        // Whatever happened, the committer lands what it was handed.
        let _ = steps.send(Step::Stop).await;
        let committed = committer.await;
        consumer.leave();
        let mut summary = committed.context("the committer task crashed")??;
        summary.first_record = consumed?;
        Ok(summary)
    }

    /// Reads records into micro-batches and hands each to the committer.
    /// Returns when the first record was accepted.
    async fn consume(
        &self,
        consumer: &GroupConsumer,
        seen: &Mutex<Landed>,
        steps: &Sender<Step>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<Option<Instant>> {
        let mut next = Next::new();
        let mut pending: Batcher<Record> = Batcher::new(self.batch);
        let mut first_record = None;
        let mut last_event = Instant::now();
        let mut stats = tokio::time::interval(Duration::from_secs(5));
        tokio::pin!(shutdown);
        loop {
            let age = pending.age_left().unwrap_or(Duration::from_secs(3600));
            let idle = self.exit_when_idle.map_or(Duration::from_secs(3600), |d| {
                d.saturating_sub(last_event.elapsed())
            });
            tokio::select! {
                biased;
                _ = &mut shutdown => {
                    tracing::info!("shutting down: committing the open batch");
                    break;
                }
                _ = steps.closed() => bail!("the committer stopped"),
                received = consumer.recv() => {
                    if apply(consumer, seen, steps, &mut next, &mut pending).await? {
                        last_event = Instant::now();
                    }
                    match received {
                        Ok(record) => {
                            last_event = Instant::now();
                            if accept(&mut next, &record) {
                                first_record.get_or_insert_with(Instant::now);
                                let size = record.payload.len() + 64;
                                pending.push(record, size);
                            }
                        }
                        Err(e) => {
                            tracing::warn!("kafka: {e}");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                    if pending.is_full() {
                        hand_over(steps, Step::Batch(pending.take())).await?;
                    }
                }
                _ = consumer.changed() => {
                    if apply(consumer, seen, steps, &mut next, &mut pending).await? {
                        last_event = Instant::now();
                    }
                }
                _ = tokio::time::sleep(age), if !pending.is_empty() => {
                    hand_over(steps, Step::Batch(pending.take())).await?;
                }
                _ = tokio::time::sleep(idle), if self.exit_when_idle.is_some() && pending.is_empty() => {
                    tracing::info!("no events for {:?}; exiting", self.exit_when_idle);
                    break;
                }
                _ = stats.tick() => self.metrics.set_lag(&self.kafka.topic, &consumer.lag()),
            }
        }
        apply(consumer, seen, steps, &mut next, &mut pending).await?;
        if !pending.is_empty() {
            hand_over(steps, Step::Batch(pending.take())).await?;
        }
        Ok(first_record)
    }

    /// Lands batches in order and tracks the markers of owned partitions.
    async fn commit_loop(
        self: Arc<Self>,
        mut queue: Receiver<Step>,
        lake: Arc<tokio::sync::Mutex<Lake>>,
        consumer: Arc<GroupConsumer>,
    ) -> Result<Summary> {
        let mut landed = Landed::new();
        // Partitions this worker holds, as the committer learns of them.
        let mut owned: HashSet<i32> = HashSet::new();
        let mut summary = Summary::default();
        let mut upkeep = Upkeep::new(
            &self.lake,
            &self.storage,
            self.tables(),
            &self.upkeep,
            &self.indexes,
        );
        while let Some(step) = queue.recv().await {
            match step {
                Step::Batch(mut records) => {
                    // Records of a partition revoked while the batch filled
                    // are its next owner's: it reads them from the markers.
                    records.retain(|r| owned.contains(&r.partition));
                    if records.is_empty() {
                        continue;
                    }
                    self.flush(&lake, &consumer, &mut landed, records, &mut summary)
                        .await?;
                    upkeep.committed();
                }
                Step::Assigned(partitions, read) => {
                    landed.retain(|(_, p), _| !partitions.contains(p));
                    landed.extend(read);
                    owned.extend(&partitions);
                }
                Step::Revoked(partitions, done) => {
                    landed.retain(|(_, p), _| !partitions.contains(p));
                    owned.retain(|p| !partitions.contains(p));
                    let _ = done.send(());
                }
                Step::Stop => break,
            }
        }
        upkeep.finish().await;
        Ok(summary)
    }

    fn offsets(&self) -> Offsets {
        Offsets::new(&self.pipeline, &self.kafka.topic)
    }

    /// Every table a batch commits to, `documents` last: a reader that sees a
    /// document sees its chunks.
    fn tables(&self) -> Vec<String> {
        let mut tables: Vec<String> = self.runner.tables().iter().map(|t| t.to_string()).collect();
        tables.push("failures".into());
        tables.sort_by_key(|t| commit_rank(t));
        tables
    }

    /// Where newly assigned partitions start: one past the oldest marker of
    /// any table, read in the rebalance itself (the consumer's poll runs on a
    /// runtime thread, so it may block on the lake).
    fn start_offsets(
        &self,
        lake: Arc<tokio::sync::Mutex<Lake>>,
        tables: Vec<String>,
        seen: Arc<Mutex<Landed>>,
    ) -> crate::sources::kafka::StartOffsets {
        let handle = tokio::runtime::Handle::current();
        let offsets = self.offsets();
        Box::new(move |partitions: &[i32]| {
            tokio::task::block_in_place(|| {
                handle.block_on(async {
                    let mut lake = lake.lock().await;
                    let read = offsets.read(&mut lake, &tables, partitions).await?;
                    let starts = Offsets::starts(&read, &tables, partitions);
                    seen.lock().unwrap_or_else(|p| p.into_inner()).extend(read);
                    Ok(starts)
                })
            })
        })
    }

    /// Processes a batch of records and commits every table.
    async fn flush(
        &self,
        lake: &tokio::sync::Mutex<Lake>,
        consumer: &GroupConsumer,
        landed: &mut Landed,
        records: Vec<Record>,
        summary: &mut Summary,
    ) -> Result<()> {
        let closed = Instant::now();
        let work = self.reader.read(&records).await;
        let mut last: BTreeMap<i32, i64> = BTreeMap::new();
        for (pos, _) in &work {
            let e = last.entry(pos.partition).or_insert(pos.offset);
            *e = (*e).max(pos.offset);
        }

        // Documents once per version, even when published twice in a batch.
        let mut docs = Vec::new();
        let mut keys_seen = HashSet::new();
        let mut failures: Vec<(Position, Failure)> = Vec::new();
        for (pos, w) in &work {
            self.metrics.count_event(w.outcome());
            match w {
                Work::Upsert(landing) => {
                    for doc in &landing.docs {
                        if keys_seen.insert((doc.doc_id.clone(), doc.content_hash.clone())) {
                            docs.push(doc);
                        }
                    }
                    failures.extend(landing.failures().map(|f| (*pos, f.clone())));
                    summary.upserts += 1;
                }
                Work::Failed(f) => failures.push((*pos, f.clone())),
                Work::Delete(_) => summary.deletes += 1,
                Work::Superseded => {}
            }
        }
        let read = closed.elapsed();
        // A version that comes back runs only the stages it still needs.
        // The lake is held only to find them: a rebalance waits on it.
        let needed = {
            let mut lake = lake.lock().await;
            Needed::of(
                &mut lake,
                &self.runner,
                &Policy::default(),
                docs.iter().copied(),
            )
            .await?
        };
        let ran = needed.run(&self.runner, None).await?;
        let staged = closed.elapsed();
        let position_of: HashMap<DocKey, Position> = work
            .iter()
            .flat_map(|(pos, w)| w.keys().into_iter().map(|k| (k, *pos)))
            .collect();
        for f in ran.failures {
            let key = (f.doc_id.clone(), f.content_hash.clone());
            if let Some(pos) = position_of.get(&key) {
                failures.push((*pos, f));
            }
        }
        for (_, f) in &failures {
            self.metrics.count_failure(&f.stage, f.kind.as_str());
        }
        summary.failures += failures.len();
        summary.events += records.len();

        let mut lake = lake.lock().await;
        let cascades = cascades(&mut lake, &work).await?;
        let mut by_table: HashMap<String, Vec<RecordBatch>> = HashMap::new();
        if !docs.is_empty() {
            // Also the text of versions that needed no stage: a lake from
            // before `extracted` fills it in as the topic is read again.
            by_table
                .entry("extracted".into())
                .or_default()
                .push(extracted::to_batch(&docs)?);
        }
        if !ran.lineage.is_empty() {
            by_table
                .entry("lineage".into())
                .or_default()
                .push(record::to_batch(
                    &ran.lineage,
                    self.runner.run_id(),
                    Utc::now(),
                )?);
        }
        for StageOutput { table, batches, .. } in ran.outputs {
            if table == "usage" {
                batches.iter().for_each(|b| self.metrics.count_usage(b));
            }
            by_table.entry(table).or_default().extend(batches);
        }
        if !failures.is_empty() {
            let rows: Vec<Failure> = failures.iter().map(|(_, f)| f.clone()).collect();
            by_table
                .entry("failures".into())
                .or_default()
                .push(failure::to_batch(&rows, Utc::now())?);
        }
        for table in self.tables() {
            let batches = by_table.remove(&table).unwrap_or_default();
            let batch = Batch {
                work: &work,
                cascades: &cascades,
                last: &last,
            };
            self.commit_table(&mut lake, landed, &table, batch, batches)
                .await?;
        }
        drop(lake);
        let next: HashMap<i32, i64> = last.iter().map(|(p, o)| (*p, o + 1)).collect();
        if let Err(e) = consumer.commit(&next) {
            tracing::warn!("{e:#}");
        }
        summary.batches += 1;
        summary.last_commit = Some(Instant::now());
        tracing::debug!(
            events = records.len(),
            read_ms = read.as_millis(),
            stages_ms = (staged - read).as_millis(),
            commit_ms = (closed.elapsed() - staged).as_millis(),
            "batch landed"
        );
        self.metrics.batch_events.observe(records.len() as f64);
        self.metrics
            .batch_seconds
            .observe(closed.elapsed().as_secs_f64());
        Ok(())
    }

    /// One table's share of a batch: erasures, then the rows of records the
    /// table does not hold yet, in one commit with the batch's markers.
    async fn commit_table(
        &self,
        lake: &mut Lake,
        landed: &mut Landed,
        table: &str,
        batch: Batch<'_>,
        batches: Vec<RecordBatch>,
    ) -> Result<()> {
        let markers = self
            .offsets()
            .fence(lake, landed, table, batch.last)
            .await?;
        // Records this table does not hold yet, worked out before any await.
        let new: Vec<(&Work, &HashSet<String>)> = batch
            .work
            .iter()
            .zip(batch.cascades)
            .filter(|((pos, _), _)| {
                landed
                    .get(&(table.to_string(), pos.partition))
                    .is_none_or(|l| pos.offset > *l)
            })
            .map(|((_, w), cascade)| (w, cascade))
            .collect();
        let mut erase: HashSet<String> = HashSet::new();
        for (w, cascade) in &new {
            if let Work::Delete(id) = w {
                erase.insert(id.clone());
            }
            erase.extend(cascade.iter().cloned());
        }
        let fresh: HashSet<DocKey> = new.iter().flat_map(|(w, _)| w.keys()).collect();
        let any_new = !new.is_empty();
        if !erase.is_empty() {
            let n = lake.delete_documents(table, &erase).await?;
            tracing::debug!(table, rows = n, docs = erase.len(), "erased");
        }
        let kept = batches
            .iter()
            .map(|b| of_keys(b, &fresh, any_new))
            .collect::<Result<Vec<_>>>()?;
        let rows = lake
            .append_marked(table, kept, markers)
            .await
            .with_context(|| format!("writing table {table}"))?;
        self.metrics.count_rows(table, rows);
        for (p, offset) in batch.last {
            landed.insert((table.to_string(), *p), *offset);
        }
        Ok(())
    }
}

/// One batch's records, as every table's commit sees them.
#[derive(Clone, Copy)]
struct Batch<'a> {
    work: &'a [(Position, Work)],
    /// Per record, the children its commit erases.
    cascades: &'a [HashSet<String>],
    /// The last offset per partition.
    last: &'a BTreeMap<i32, i64>,
}

/// Per record, the children its commit erases: every descendant of a
/// deleted document, and those a container's new version no longer holds.
/// Read before any table's commit, while `documents` (committed last)
/// still lists them.
async fn cascades(lake: &mut Lake, work: &[(Position, Work)]) -> Result<Vec<HashSet<String>>> {
    let parent = |w: &Work| match w {
        Work::Delete(id) => Some(id.clone()),
        Work::Upsert(landing) if landing.docs.len() > 1 => {
            landing.document().map(|d| d.doc_id.clone())
        }
        _ => None,
    };
    let parents: HashSet<String> = work.iter().filter_map(|(_, w)| parent(w)).collect();
    if parents.is_empty() {
        return Ok(vec![HashSet::new(); work.len()]);
    }
    let under = lake.descendants(&parents).await?;
    Ok(work
        .iter()
        .map(|(_, w)| {
            let all = parent(w).and_then(|p| under.get(&p));
            let kept: HashSet<&str> = match w {
                Work::Upsert(landing) => landing.descendants().collect(),
                _ => HashSet::new(),
            };
            all.into_iter()
                .flatten()
                .filter(|id| !kept.contains(id.as_str()))
                .cloned()
                .collect()
        })
        .collect())
}

/// Takes in partition changes: new partitions start where the lake says
/// (the committer learns their markers); revoked ones drop their pending
/// records, which their new owner reads. Returns whether partitions were
/// assigned.
async fn apply(
    consumer: &GroupConsumer,
    seen: &Mutex<Landed>,
    steps: &Sender<Step>,
    next: &mut Next,
    pending: &mut Batcher<Record>,
) -> Result<bool> {
    let mut assigned = false;
    for change in consumer.changes() {
        match change {
            Assignment::Assigned(starts) => {
                let partitions: Vec<i32> = starts.keys().copied().collect();
                let read: Landed = {
                    let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                    let (ours, rest) = std::mem::take(&mut *seen)
                        .into_iter()
                        .partition(|((_, p), _)| partitions.contains(p));
                    *seen = rest;
                    ours
                };
                for (p, start) in starts {
                    next.insert(p, start);
                    tracing::info!(partition = p, start = ?start, "assigned");
                }
                hand_over(steps, Step::Assigned(partitions, read)).await?;
                assigned = true;
            }
            Assignment::Revoked(partitions) => {
                let gone: HashSet<i32> = partitions.into_iter().collect();
                pending.retain(|r| !gone.contains(&r.partition));
                next.retain(|p, _| !gone.contains(p));
                tracing::info!(partitions = ?gone, "revoked");
            }
            Assignment::Failed(e) => {
                bail!("cannot take over partitions: {e}. Check that the lake is reachable, then restart")
            }
        }
    }
    Ok(assigned)
}

async fn hand_over(steps: &Sender<Step>, step: Step) -> Result<()> {
    steps
        .send(step)
        .await
        .map_err(|_| anyhow::anyhow!("the committer stopped"))
}

/// Blocks a revoke until the committer landed everything handed over before
/// it. Runs on the consumer's poll, a runtime thread, so it may block.
fn revoke_hook(steps: Sender<Step>) -> crate::sources::kafka::OnRevoke {
    let handle = tokio::runtime::Handle::current();
    Box::new(move |partitions: &[i32]| {
        let (done, landed) = tokio::sync::oneshot::channel();
        tokio::task::block_in_place(|| {
            handle.block_on(async {
                if steps
                    .send(Step::Revoked(partitions.to_vec(), done))
                    .await
                    .is_ok()
                {
                    let _ = landed.await;
                }
            })
        })
    })
}

/// Whether a record is the next one of a partition this worker owns. Drops
/// records fetched before a rebalance and re-deliveries.
fn accept(next: &mut Next, record: &Record) -> bool {
    let Some(next) = next.get_mut(&record.partition) else {
        return false;
    };
    if next.is_some_and(|n| record.offset < n) {
        return false;
    }
    *next = Some(record.offset + 1);
    true
}

/// The rows of `batch` whose (doc_id, content_hash) is in `keys`. Tables
/// without those columns (usage) keep every row when any record is new.
fn of_keys(batch: &RecordBatch, keys: &HashSet<DocKey>, any_new: bool) -> Result<RecordBatch> {
    let (Some(ids), Some(hashes)) = (
        batch.column_by_name("doc_id"),
        batch.column_by_name("content_hash"),
    ) else {
        return Ok(if any_new {
            batch.clone()
        } else {
            batch.slice(0, 0)
        });
    };
    let (ids, hashes) = (cast(ids, &DataType::Utf8)?, cast(hashes, &DataType::Utf8)?);
    let (ids, hashes) = (ids.as_string::<i32>(), hashes.as_string::<i32>());
    let mask: BooleanArray = (0..batch.num_rows())
        .map(|i| {
            Some(
                ids.is_valid(i)
                    && hashes.is_valid(i)
                    && keys.contains(&(ids.value(i).to_string(), hashes.value(i).to_string())),
            )
        })
        .collect();
    Ok(filter_record_batch(batch, &mask)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(partition: i32, offset: i64) -> Record {
        Record {
            partition,
            offset,
            key: None,
            payload: Vec::new(),
            timestamp_ms: None,
        }
    }

    #[test]
    fn only_owned_partitions_and_new_offsets_are_accepted() {
        let mut own = Next::new();
        own.insert(0, Some(10));
        own.insert(1, None);
        // Fetched before the start offset took effect, or re-delivered.
        assert!(!accept(&mut own, &record(0, 9)));
        assert!(accept(&mut own, &record(0, 10)));
        assert!(!accept(&mut own, &record(0, 10)));
        assert!(accept(&mut own, &record(0, 12)));
        assert!(!accept(&mut own, &record(0, 11)));
        // No marker yet: whatever Kafka delivers first.
        assert!(accept(&mut own, &record(1, 5)));
        assert!(!accept(&mut own, &record(1, 4)));
        // Not ours (revoked, or never assigned).
        assert!(!accept(&mut own, &record(2, 0)));
    }

    #[test]
    fn rows_are_kept_only_for_new_document_versions() {
        use deltalake::arrow::array::StringArray;
        use deltalake::arrow::datatypes::{Field, Schema};

        let schema = Arc::new(Schema::new(vec![
            Field::new("doc_id", DataType::Utf8, false),
            Field::new("content_hash", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["a", "a", "b"])),
                Arc::new(StringArray::from(vec!["1", "2", "1"])),
            ],
        )
        .unwrap();
        let keys: HashSet<DocKey> = [("a".to_string(), "2".to_string())].into();
        let kept = of_keys(&batch, &keys, true).unwrap();
        assert_eq!(kept.num_rows(), 1);
        let ids = kept.column(1).as_string::<i32>();
        assert_eq!(ids.value(0), "2");
    }
}
