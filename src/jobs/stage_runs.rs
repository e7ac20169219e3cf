//! The stage runs a micro-batch needs: which stages each document version
//! still needs, as `lineage` says now, run in one group per set of stages,
//! with the lake's rows of the stages they read that do not run.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use anyhow::Result;

use crate::contract::extracted::ExtractedDoc;
use crate::contract::failure::Failure;
use crate::contract::identity::DocKey;
use crate::lineage::budget::Budget;
use crate::lineage::inputs;
use crate::lineage::ledger::{Ledger, Retry, OK};
use crate::lineage::record::{self, Entry};
use crate::sinks::lake::Lake;
use crate::stages::config::{Input, Stage};
use crate::stages::runner::{Selection, StageOutput, StageRunner, StageWatch};

/// How a run treats earlier failures and what it may spend.
#[derive(Default, Clone)]
pub struct Policy {
    pub retry: Retry,
    pub budget: Option<Arc<Budget>>,
}

/// The stages one group of versions needs.
struct Group<'d> {
    todo: BTreeSet<String>,
    docs: Vec<&'d ExtractedDoc>,
    selection: Option<Selection>,
}

pub struct Needed<'d> {
    groups: Vec<Group<'d>>,
    /// Versions that need no stage (another writer landed them).
    pub settled: usize,
}

/// What the stages made.
pub struct Ran {
    pub outputs: Vec<StageOutput>,
    pub failures: Vec<Failure>,
    pub lineage: Vec<Entry>,
}

impl Ran {
    /// Stage runs on a version that succeeded.
    pub fn stage_runs(&self) -> usize {
        self.lineage.iter().filter(|e| e.status == OK).count()
    }
}

impl<'d> Needed<'d> {
    /// What `docs` need under `policy`, charged to its budget.
    pub async fn of(
        lake: &mut Lake,
        runner: &StageRunner,
        policy: &Policy,
        docs: impl IntoIterator<Item = &'d ExtractedDoc>,
    ) -> Result<Self> {
        let ledger = Ledger::new(runner.stages(), policy.retry);
        let lineage = lake.landed_keys("lineage").await?;
        let mut by_todo: BTreeMap<BTreeSet<String>, Vec<&ExtractedDoc>> = BTreeMap::new();
        let mut settled = 0;
        for doc in docs {
            let todo = ledger.todo(lineage, &doc.doc_id, &doc.content_hash);
            match todo.is_empty() {
                true => settled += 1,
                false => by_todo.entry(todo).or_default().push(doc),
            }
        }
        if let Some(budget) = &policy.budget {
            let cost = by_todo.iter().map(|(t, d)| budget.estimate(t, d)).sum();
            budget.charge(cost)?;
        }
        let mut groups = Vec::new();
        for (todo, docs) in by_todo {
            let selection = selection(lake, runner, &todo, &docs).await?;
            groups.push(Group {
                todo,
                docs,
                selection,
            });
        }
        Ok(Self { groups, settled })
    }

    /// Runs each group's stages; `watch` hears of their progress.
    pub async fn run(
        self,
        runner: &StageRunner,
        watch: Option<Arc<dyn StageWatch>>,
    ) -> Result<Ran> {
        let mut ran = Ran {
            outputs: Vec::new(),
            failures: Vec::new(),
            lineage: Vec::new(),
        };
        for g in self.groups {
            let (out, failed) = runner
                .run_docs(&g.docs, g.selection.as_ref(), watch.clone())
                .await?;
            let stages: Vec<&Stage> = runner
                .stages()
                .iter()
                .filter(|s| g.todo.contains(&s.name))
                .collect();
            ran.lineage
                .extend(record::entries(&g.docs, &stages, &out, &failed)?);
            ran.outputs.extend(out);
            ran.failures.extend(failed);
        }
        Ok(ran)
    }
}

/// What a run of `todo` needs, when not every stage runs or a stage
/// reads one that does not: the lake's rows of the stages read that do
/// not run. `None` when the run is a whole pipeline's.
async fn selection(
    lake: &mut Lake,
    runner: &StageRunner,
    todo: &BTreeSet<String>,
    group: &[&ExtractedDoc],
) -> Result<Option<Selection>> {
    let stages = runner.stages();
    let mut read: BTreeMap<&str, &Input> = BTreeMap::new();
    for s in stages.iter().filter(|s| todo.contains(&s.name)) {
        for input in s.reads.iter().filter(|r| !todo.contains(&r.name)) {
            read.insert(&input.name, input);
        }
    }
    if read.is_empty() && todo.len() == stages.len() {
        return Ok(None);
    }
    let versions: HashSet<DocKey> = group
        .iter()
        .map(|d| (d.doc_id.clone(), d.content_hash.clone()))
        .collect();
    let mut given = HashMap::new();
    for (name, input) in read {
        let rows =
            inputs::read_versions(lake, &input.table, &versions, Some(&input.fingerprint)).await?;
        given.insert(name.to_string(), rows);
    }
    Ok(Some(Selection {
        run: todo.clone(),
        given,
    }))
}
