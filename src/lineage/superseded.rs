//! Rows of superseded stage fingerprints, and their deletion: `vacuum
//! --superseded`. A version's rows of a fingerprint are superseded when a
//! later run of the same stage on that version, under another
//! fingerprint, landed. Until then `history.<table>` shows them beside
//! the current ones, for comparison.

use std::collections::{BTreeMap, HashSet};

use anyhow::Result;
use deltalake::arrow::array::{Array, AsArray};
use deltalake::datafusion::prelude::SessionContext;

use super::ledger::{ADOPTED, OK};
use crate::contract::identity::DocKey;
use crate::contract::tables::FINGERPRINT;
use crate::sinks::lake::{utf8, Lake};

/// Versions per delete: each is an `(doc_id = .. AND content_hash = ..)`
/// term of the predicate.
const VERSIONS_PER_DELETE: usize = 500;

/// One fingerprint's superseded rows in one table.
#[derive(Debug, Clone, PartialEq)]
pub struct Superseded {
    pub table: String,
    /// Empty for rows written before fingerprints.
    pub fingerprint: String,
    /// The versions whose rows of it are superseded.
    pub versions: Vec<DocKey>,
    /// Whether that is every version it wrote: the delete needs no list.
    pub all: bool,
}

/// Every superseded fingerprint of every table, from `lineage`.
pub async fn find(lake: &mut Lake) -> Result<Vec<Superseded>> {
    let ctx = SessionContext::new();
    if lake.register_table(&ctx, "lineage").await?.is_none() {
        return Ok(Vec::new());
    }
    let fp = format!("CASE WHEN status = '{ADOPTED}' THEN '' ELSE {FINGERPRINT} END");
    let sql = format!(
        "WITH runs AS (
            SELECT doc_id, content_hash, stage, output_table, {fp} AS fp_, computed_at
            FROM lineage WHERE status IN ('{OK}', '{ADOPTED}')),
         latest AS (
            SELECT doc_id, content_hash, stage, fp_ FROM (
                SELECT *, row_number() OVER (PARTITION BY doc_id, content_hash, stage ORDER BY computed_at DESC) AS rank_
                FROM runs) WHERE rank_ = 1)
         SELECT DISTINCT r.output_table, r.fp_, r.doc_id, r.content_hash, r.fp_ <> l.fp_ AS old_
         FROM runs r JOIN latest l
           ON r.doc_id = l.doc_id AND r.content_hash = l.content_hash AND r.stage = l.stage"
    );
    // (table, fingerprint) -> (superseded versions, whether any is current)
    let mut found: BTreeMap<(String, String), (Vec<DocKey>, bool)> = BTreeMap::new();
    for b in ctx.sql(&sql).await?.collect().await? {
        let cols = (0..4)
            .map(|i| utf8(b.column(i)))
            .collect::<Result<Vec<_>>>()?;
        let old = b.column(4).as_boolean();
        let s = |c: usize, i: usize| cols[c].as_string::<i32>().value(i).to_string();
        for i in 0..b.num_rows() {
            let entry = found.entry((s(0, i), s(1, i))).or_default();
            match old.is_valid(i) && old.value(i) {
                true => entry.0.push((s(2, i), s(3, i))),
                false => entry.1 = true,
            }
        }
    }
    Ok(found
        .into_iter()
        .filter(|(_, (versions, _))| !versions.is_empty())
        .map(|((table, fingerprint), (versions, current))| Superseded {
            table,
            fingerprint,
            versions,
            all: !current,
        })
        .collect())
}

/// Deletes the rows `s` names, and the lineage rows that recorded them
/// (so the stage would run again if the pipeline went back to that
/// fingerprint). Returns the table's rows deleted.
pub async fn delete(lake: &mut Lake, s: &Superseded) -> Result<usize> {
    let quote = |v: &str| format!("'{}'", v.replace('\'', "''"));
    let (rows, runs, status) = match s.fingerprint.is_empty() {
        true => (format!("{FINGERPRINT} IS NULL"), String::new(), ADOPTED),
        false => {
            let fp = format!("{FINGERPRINT} = {}", quote(&s.fingerprint));
            (fp.clone(), format!(" AND {fp}"), OK)
        }
    };
    let runs = format!(
        "output_table = {} AND status = '{status}'{runs}",
        quote(&s.table)
    );
    let parts: Vec<&[DocKey]> = match s.all {
        true => vec![&[]],
        false => s.versions.chunks(VERSIONS_PER_DELETE).collect(),
    };
    let mut deleted = 0;
    for part in parts {
        let versions: HashSet<(&str, &str)> =
            part.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let within = match s.all {
            true => String::new(),
            false => {
                let terms: Vec<String> = part
                    .iter()
                    .map(|(id, hash)| {
                        format!(
                            "(doc_id = {} AND content_hash = {})",
                            quote(id),
                            quote(hash)
                        )
                    })
                    .collect();
                format!(" AND ({})", terms.join(" OR "))
            }
        };
        let listed = |k: &Vec<String>| s.all || versions.contains(&(k[0].as_str(), k[1].as_str()));
        deleted += lake
            .delete_where(&s.table, format!("{rows}{within}"), |k| {
                k.len() > 2 && k[2] == s.fingerprint && listed(k)
            })
            .await?;
        lake.delete_where("lineage", format!("{runs}{within}"), |k| {
            k.len() > 4
                && k[4] == status
                && (s.fingerprint.is_empty() || k[3] == s.fingerprint)
                && listed(k)
        })
        .await?;
    }
    Ok(deleted)
}
