//! Which objects a document event may make a worker read. An event names an
//! object by URI, and the worker reads it with its own credentials, so
//! without a policy anyone who can produce to the topic could land any file
//! the worker can read (`file:///etc/passwd`, another team's bucket) under a
//! tenant of their choice.

use std::collections::BTreeMap;

use url::Url;

use crate::storage::{as_directory, parse_location};

/// Allowed object prefixes, from `allowed_objects` and `tenant_objects`
/// of the section that configures the reader (`[kafka]` or `[serve]`).
#[derive(Debug, Clone)]
pub struct ObjectPolicy {
    /// The pipeline file's section, for the messages.
    section: &'static str,
    /// Empty: any bucket (`s3://`, `gs://`, `az://`), never local files;
    /// nothing at all when `closed`.
    allowed: Vec<Url>,
    closed: bool,
    /// A tenant listed here may only name objects under its own prefixes.
    by_tenant: BTreeMap<String, Vec<Url>>,
}

impl Default for ObjectPolicy {
    fn default() -> Self {
        Self {
            section: "kafka",
            allowed: Vec::new(),
            closed: false,
            by_tenant: BTreeMap::new(),
        }
    }
}

impl ObjectPolicy {
    /// The policy of `[section]`'s `allowed_objects` and `tenant_objects`.
    pub fn new(
        section: &'static str,
        allowed: &[String],
        by_tenant: &BTreeMap<String, Vec<String>>,
    ) -> anyhow::Result<Self> {
        let prefixes = |list: &[String]| -> anyhow::Result<Vec<Url>> {
            list.iter()
                .map(|p| parse_location(p).map(as_directory))
                .collect()
        };
        Ok(Self {
            section,
            closed: false,
            allowed: prefixes(allowed)?,
            by_tenant: by_tenant
                .iter()
                .map(|(t, list)| Ok((t.clone(), prefixes(list)?)))
                .collect::<anyhow::Result<_>>()?,
        })
    }

    /// With no prefixes listed, nothing may be read, except under a
    /// tenant's own prefixes (for callers that are not trusted the way a
    /// topic's producers are).
    pub fn closed_when_empty(mut self) -> Self {
        self.closed = true;
        self
    }

    /// Why `tenant` may not read `object`, or `None` when it may.
    pub fn refusal(&self, tenant: &str, object: &Url) -> Option<String> {
        if object
            .path_segments()
            .is_some_and(|mut s| s.any(|s| s == ".." || s == "."))
        {
            return Some(format!("{object} has a relative path segment"));
        }
        let under = |prefixes: &[Url]| {
            prefixes
                .iter()
                .any(|p| object.as_str().starts_with(p.as_str()))
        };
        let section = self.section;
        if let Some(own) = self.by_tenant.get(tenant) {
            if !under(own) {
                return Some(format!(
                    "{object} is outside tenant {tenant}'s prefixes in [{section}.tenant_objects]"
                ));
            }
            if self.closed && self.allowed.is_empty() {
                return None;
            }
        }
        if self.allowed.is_empty() && self.closed {
            return Some(format!(
                "no objects may be named here; list prefixes in [{section}] allowed_objects to allow them"
            ));
        }
        if self.allowed.is_empty() {
            return (!matches!(object.scheme(), "s3" | "s3a" | "gs" | "az" | "abfs" | "abfss"))
                .then(|| format!("{object} is not in a bucket; list its prefix in [{section}] allowed_objects to let events name {}:// objects", object.scheme()));
        }
        (!under(&self.allowed)).then(|| {
            format!(
                "{object} is outside [{section}] allowed_objects; add its prefix there to allow it"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn local_files_need_a_listed_prefix() {
        let open = ObjectPolicy::default();
        assert!(open.refusal("t", &url("file:///etc/passwd")).is_some());
        assert!(open.refusal("t", &url("s3://inbox/a.txt")).is_none());

        let listed = ObjectPolicy::new(
            "kafka",
            &["s3://inbox/2026".into(), "/srv/drop".into()],
            &BTreeMap::new(),
        )
        .unwrap();
        assert!(listed.refusal("t", &url("s3://inbox/2026/a.txt")).is_none());
        assert!(listed
            .refusal("t", &url("file:///srv/drop/a.txt"))
            .is_none());
        // A prefix is a folder, not a string prefix.
        assert!(listed
            .refusal("t", &url("s3://inbox/20261/a.txt"))
            .is_some());
        assert!(listed.refusal("t", &url("s3://other/a.txt")).is_some());
        assert!(listed.refusal("t", &url("file:///etc/passwd")).is_some());
    }

    #[test]
    fn a_listed_tenant_stays_in_its_prefixes() {
        let by_tenant = BTreeMap::from([("acme".to_string(), vec!["s3://acme/".to_string()])]);
        let policy = ObjectPolicy::new("kafka", &[], &by_tenant).unwrap();
        assert!(policy.refusal("acme", &url("s3://acme/x.pdf")).is_none());
        assert!(policy.refusal("acme", &url("s3://globex/x.pdf")).is_some());
        assert!(policy
            .refusal("globex", &url("s3://globex/x.pdf"))
            .is_none());
        let closed = policy.closed_when_empty();
        assert!(closed.refusal("acme", &url("s3://acme/x.pdf")).is_none());
        let why = closed.refusal("globex", &url("s3://globex/x.pdf"));
        assert!(why.is_some_and(|w| w.contains("[kafka] allowed_objects")));
    }
}
