//! Turning user-given locations (paths and object-store URLs) into object
//! stores and deltalake storage options. Shared by sources and sinks.

use std::collections::HashMap;
use std::path::Path as FsPath;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::ObjectStore;
use url::Url;

/// Settings that apply to every location in a run.
#[derive(Debug, Clone, Default)]
pub struct StorageOptions {
    /// Endpoint of an S3-compatible server (MinIO, s3s, ...).
    pub s3_endpoint: Option<String>,
}

/// docstream's cache folder: `$XDG_CACHE_HOME/docstream`, else
/// `~/.cache/docstream`.
pub fn cache_home() -> std::path::PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| std::path::PathBuf::from(".cache"))
        .join("docstream")
}

/// A location resolved to a URL: `file://` for local paths.
pub fn parse_location(location: &str) -> Result<Url> {
    if let Ok(url) = Url::parse(location) {
        if url.scheme().len() > 1 {
            return Ok(url);
        }
    }
    let path = FsPath::new(location);
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    let abs = normalize(&abs);
    Url::from_directory_path(&abs)
        .map_err(|_| anyhow::anyhow!("cannot turn '{location}' into a file URL"))
}

/// Removes `.` and `..` without touching the filesystem (the path may not exist yet).
fn normalize(path: &FsPath) -> std::path::PathBuf {
    let mut out = std::path::PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The URL with a trailing slash, so joins append instead of replacing.
pub fn as_directory(mut url: Url) -> Url {
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url
}

impl StorageOptions {
    /// An object store rooted at the URL's bucket (or `/` locally) and the
    /// prefix inside it that the URL names.
    pub fn object_store(&self, url: &Url) -> Result<(Arc<dyn ObjectStore>, Path)> {
        let prefix =
            Path::from_url_path(url.path()).with_context(|| format!("invalid path in {url}"))?;
        let store: Arc<dyn ObjectStore> = match url.scheme() {
            "file" => Arc::new(LocalFileSystem::new()),
            "s3" | "s3a" => {
                let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket(url)?);
                if let Some(endpoint) = &self.s3_endpoint {
                    b = b
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://"))
                        .with_virtual_hosted_style_request(false);
                }
                Arc::new(b.build().context(
                    "cannot configure S3: set AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION (and --s3-endpoint for S3-compatible servers)",
                )?)
            }
            "gs" => Arc::new(
                GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(bucket(url)?)
                    .build()
                    .context("cannot configure GCS: set GOOGLE_SERVICE_ACCOUNT or GOOGLE_APPLICATION_CREDENTIALS")?,
            ),
            "az" | "abfs" | "abfss" => Arc::new(
                MicrosoftAzureBuilder::from_env()
                    .with_url(url.as_str())
                    .build()
                    .context("cannot configure Azure: set AZURE_STORAGE_ACCOUNT_NAME and a key or token")?,
            ),
            other => bail!("unsupported location scheme '{other}://': use a local path, file://, s3://, gs:// or az://"),
        };
        Ok((store, prefix))
    }

    /// Storage options for deltalake: the endpoint plus every AWS_/GOOGLE_/AZURE_
    /// variable, so tables open the same way the source does.
    pub fn delta_options(&self) -> HashMap<String, String> {
        let mut opts: HashMap<String, String> = std::env::vars()
            .filter(|(k, _)| {
                k.starts_with("AWS_") || k.starts_with("GOOGLE_") || k.starts_with("AZURE_")
            })
            .collect();
        if let Some(endpoint) = &self.s3_endpoint {
            opts.insert("AWS_ENDPOINT_URL".into(), endpoint.clone());
            if endpoint.starts_with("http://") {
                opts.insert("AWS_ALLOW_HTTP".into(), "true".into());
            }
        }
        opts
    }
}

fn bucket(url: &Url) -> Result<&str> {
    url.host_str()
        .filter(|h| !h.is_empty())
        .with_context(|| format!("{url} names no bucket"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let u = parse_location("/tmp/a b/../c").unwrap();
        assert_eq!(u.as_str(), "file:///tmp/c/");
        assert_eq!(parse_location("s3://bucket/x/").unwrap().scheme(), "s3");
        assert!(parse_location("relative/dir")
            .unwrap()
            .path()
            .ends_with("/relative/dir/"));
        assert!(StorageOptions::default()
            .object_store(&Url::parse("ftp://x/y").unwrap())
            .is_err());
    }
}
