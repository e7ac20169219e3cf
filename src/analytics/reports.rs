//! Named reports: SQL files whose leading `--` comment describes them.
//! The built-in ones (`sql/analytics/`) are compiled in; a pipeline's
//! `[analytics] reports` folder adds more or replaces them by name.

use std::path::Path;

use anyhow::{bail, Context, Result};

const BUILTIN: &[(&str, &str)] = &[
    (
        "risks-by-week",
        include_str!("../../sql/analytics/risks-by-week.sql"),
    ),
    (
        "unmitigated-risks",
        include_str!("../../sql/analytics/unmitigated-risks.sql"),
    ),
    (
        "action-items-due",
        include_str!("../../sql/analytics/action-items-due.sql"),
    ),
    (
        "documents-per-day",
        include_str!("../../sql/analytics/documents-per-day.sql"),
    ),
    (
        "model-cost",
        include_str!("../../sql/analytics/model-cost.sql"),
    ),
    (
        "failure-rate",
        include_str!("../../sql/analytics/failure-rate.sql"),
    ),
];

#[derive(Debug, Clone)]
pub struct Report {
    pub name: String,
    pub description: String,
    pub sql: String,
}

impl Report {
    fn new(name: &str, sql: String) -> Self {
        let description = sql
            .lines()
            .map_while(|l| l.trim().strip_prefix("--"))
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" ");
        Self {
            name: name.to_string(),
            description,
            sql,
        }
    }
}

/// Every report, by name: the built-in ones, and those in `folder` (which
/// replace built-in ones of the same name).
pub fn all(folder: Option<&Path>) -> Result<Vec<Report>> {
    let mut reports: Vec<Report> = BUILTIN
        .iter()
        .map(|(name, sql)| Report::new(name, sql.to_string()))
        .collect();
    if let Some(folder) = folder {
        for report in read_folder(folder)? {
            reports.retain(|r| r.name != report.name);
            reports.push(report);
        }
    }
    reports.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(reports)
}

/// The report called `name`.
pub fn find(folder: Option<&Path>, name: &str) -> Result<Report> {
    let reports = all(folder)?;
    let names: Vec<&str> = reports.iter().map(|r| r.name.as_str()).collect();
    let known = names.join(", ");
    match reports.iter().find(|r| r.name == name) {
        Some(r) => Ok(r.clone()),
        None => bail!("no report named '{name}'; reports: {known} (see `docstream report --list`)"),
    }
}

fn read_folder(folder: &Path) -> Result<Vec<Report>> {
    let entries = std::fs::read_dir(folder)
        .with_context(|| format!("cannot read the reports folder {}", folder.display()))?;
    let mut reports = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "sql") {
            let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            let sql = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            reports.push(Report::new(name, sql));
        }
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_reports_describe_themselves() {
        let reports = all(None).unwrap();
        assert_eq!(reports.len(), BUILTIN.len());
        for r in &reports {
            assert!(r.description.len() > 20, "{}: {}", r.name, r.description);
            assert!(!r.description.contains("--"), "{}", r.description);
        }
        assert!(find(None, "risks-by-week").is_ok());
        let err = find(None, "nope").unwrap_err().to_string();
        assert!(err.contains("model-cost"), "{err}");
    }
}
