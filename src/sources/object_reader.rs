//! Reading an object a caller names by URI: the policy first, then a size
//! limit before and after the read, with one object store per bucket.
//! Kafka events and `serve` uploads by URI read through it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use object_store::{ObjectStore, ObjectStoreExt};
use url::Url;

use super::object_policy::ObjectPolicy;
use crate::storage::StorageOptions;

/// Why an object was not read.
#[derive(Debug)]
pub enum ObjectError {
    /// The policy refuses it, for this reason.
    Refused(String),
    /// It holds this many bytes, over the caller's limit.
    TooLarge(u64),
    /// It is missing, or storage failed.
    Read(String),
}

pub struct ObjectReader {
    storage: StorageOptions,
    policy: ObjectPolicy,
    stores: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl ObjectReader {
    pub fn new(storage: StorageOptions, policy: ObjectPolicy) -> Self {
        Self {
            storage,
            policy,
            stores: Mutex::new(HashMap::new()),
        }
    }

    /// The bytes of `uri`, read for `tenant`, if it holds at most
    /// `max_bytes` (`size`: what the caller says it holds, checked first).
    pub async fn read(
        &self,
        uri: &str,
        tenant: &str,
        size: Option<u64>,
        max_bytes: u64,
    ) -> Result<Bytes, ObjectError> {
        if let Some(size) = size.filter(|s| *s > max_bytes) {
            return Err(ObjectError::TooLarge(size));
        }
        let read_error = |e: String| ObjectError::Read(format!("cannot read {uri}: {e}"));
        let url = Url::parse(uri).map_err(|e| read_error(e.to_string()))?;
        if let Some(why) = self.policy.refusal(tenant, &url) {
            return Err(ObjectError::Refused(why));
        }
        let (store, path) = self.store(&url).map_err(|e| read_error(format!("{e:#}")))?;
        let got = store
            .get(&path)
            .await
            .map_err(|e| read_error(e.to_string()))?;
        if got.meta.size > max_bytes {
            return Err(ObjectError::TooLarge(got.meta.size));
        }
        got.bytes().await.map_err(|e| read_error(e.to_string()))
    }

    fn store(&self, url: &Url) -> anyhow::Result<(Arc<dyn ObjectStore>, object_store::path::Path)> {
        let bucket = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
        let mut stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(store) = stores.get(&bucket) {
            let path = object_store::path::Path::from_url_path(url.path())?;
            return Ok((store.clone(), path));
        }
        let (store, path) = self.storage.object_store(url)?;
        stores.insert(bucket, store.clone());
        Ok((store, path))
    }
}
