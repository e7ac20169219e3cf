//! Documents found inside other documents (archive members, attachments):
//! which ones the lake holds under a parent, for erasing them with it and
//! for replacing them with a new version of it.

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use deltalake::arrow::array::AsArray;
use deltalake::datafusion::prelude::SessionContext;

use super::lake::{register, utf8, Lake};

impl Lake {
    /// For each of `parents`, the doc ids under it in `documents` at every
    /// depth (not the parent itself). Empty for tables written before
    /// children existed.
    pub async fn descendants(
        &mut self,
        parents: &HashSet<String>,
    ) -> Result<HashMap<String, HashSet<String>>> {
        let mut found: HashMap<String, HashSet<String>> = HashMap::new();
        let Some(table) = self.table("documents").await? else {
            return Ok(found);
        };
        let ctx = SessionContext::new();
        register(&ctx, "documents", table).await?;
        let schema = ctx.table("documents").await?.schema().clone();
        if !schema.has_column_with_unqualified_name("parent_doc_id") {
            return Ok(found);
        }
        // Each id found, with the parent it was asked under; an id already
        // seen is not followed again, so a cycle cannot loop.
        let mut root_of: HashMap<String, String> =
            parents.iter().map(|p| (p.clone(), p.clone())).collect();
        let mut level: Vec<String> = parents.iter().cloned().collect();
        while !level.is_empty() {
            level.sort();
            let list: Vec<String> = level
                .iter()
                .map(|id| format!("'{}'", id.replace('\'', "''")))
                .collect();
            let sql = format!(
                "SELECT DISTINCT doc_id, parent_doc_id FROM documents WHERE parent_doc_id IN ({})",
                list.join(", ")
            );
            let mut next = Vec::new();
            for batch in ctx.sql(&sql).await?.collect().await? {
                let (ids, parents) = (utf8(batch.column(0))?, utf8(batch.column(1))?);
                let pairs = ids
                    .as_string::<i32>()
                    .iter()
                    .zip(parents.as_string::<i32>());
                for (id, parent) in pairs {
                    let (Some(id), Some(parent)) = (id, parent) else {
                        continue;
                    };
                    let Some(root) = root_of.get(parent).cloned() else {
                        continue;
                    };
                    if root_of.contains_key(id) {
                        continue;
                    }
                    root_of.insert(id.to_string(), root.clone());
                    found.entry(root).or_default().insert(id.to_string());
                    next.push(id.to_string());
                }
            }
            level = next;
        }
        Ok(found)
    }

    /// For each (parent, its new descendants): the descendants the lake
    /// holds that the new version no longer has.
    pub async fn stale_children(
        &mut self,
        replaced: &[(String, HashSet<String>)],
    ) -> Result<HashSet<String>> {
        let parents = replaced.iter().map(|(p, _)| p.clone()).collect();
        let old = self.descendants(&parents).await?;
        let mut stale = HashSet::new();
        for (parent, kept) in replaced {
            let gone = old.get(parent).into_iter().flatten();
            stale.extend(gone.filter(|id| !kept.contains(*id)).cloned());
        }
        Ok(stale)
    }
}
