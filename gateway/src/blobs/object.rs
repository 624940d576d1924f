//! [`ObjectBlobs`]: blobs in an object store (S3 or an S3-compatible one: MinIO, Ceph's
//! RGW, OSS's S3 API), so several gateways on one Redis share them without a shared
//! directory. The keys mirror [`super::DirBlobs`]'s files: `<prefix>/<id>` and
//! `<prefix>/named/<name>`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use xuanfang_hub::blob::BlobRef;

use super::{bad_name, checked, is_blob_name, is_our_id, new_ref, BlobStore, NAMED_DIR};

/// Why `--blob-url` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BlobUrlError {
    #[error("--blob-url {0:?}: expected s3://bucket or s3://bucket/prefix")]
    Url(String),
    #[error("--blob-url: {0}")]
    Store(#[from] object_store::Error),
}

/// Where an S3 store is, beyond the URL; unset fields come from the standard `AWS_*`
/// variables (`AWS_ENDPOINT`, `AWS_REGION`/`AWS_DEFAULT_REGION`, `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`).
#[derive(Clone, Debug, Default)]
pub struct S3Options {
    /// An S3-compatible store's address (`https://…`; `http://` only for a store on a
    /// trusted network, and then plain HTTP is allowed for it alone).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// The access key; the gateway's command line takes none (a flag's value is seen by
    /// every user of the machine), only `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

/// Blobs in an [`ObjectStore`].
pub struct ObjectBlobs {
    store: Arc<dyn ObjectStore>,
    prefix: String,
}

impl ObjectBlobs {
    /// Blobs under `prefix` (no leading or trailing `/`; empty: the store's root).
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Self {
        Self {
            store,
            prefix: prefix.trim_matches('/').to_owned(),
        }
    }

    /// The store of `--blob-url s3://bucket/prefix`. Builds the client only: nothing is
    /// asked of the store until the first blob.
    pub fn s3(url: &str, options: &S3Options) -> Result<Self, BlobUrlError> {
        let rest = (url.strip_prefix("s3://")).ok_or_else(|| BlobUrlError::Url(url.into()))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() || prefix.split('/').any(|p| p == "." || p == "..") {
            return Err(BlobUrlError::Url(url.into()));
        }
        let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(e) = &options.endpoint {
            // Both keys: the crate prefers AWS_ENDPOINT_URL_S3 over the endpoint, and the
            // flag must win over the environment.
            b = (b.with_endpoint(e)).with_config(AmazonS3ConfigKey::S3Endpoint, e);
        }
        if let Some(r) = &options.region {
            b = b.with_region(r);
        }
        if let Some(k) = &options.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(k) = &options.secret_access_key {
            b = b.with_secret_access_key(k);
        }
        // Plain HTTP only to an endpoint named http:// (never because AWS_ALLOW_HTTP said
        // so for another one).
        let endpoint = (b.get_config_value(&AmazonS3ConfigKey::S3Endpoint))
            .or_else(|| b.get_config_value(&AmazonS3ConfigKey::Endpoint));
        let http = endpoint.is_some_and(|e| e.starts_with("http://"));
        // A blob request waits on the store while a family waits on the page: a few quick
        // retries, not the crate's default of ten over three minutes.
        let retry = RetryConfig {
            max_retries: 3,
            retry_timeout: Duration::from_secs(20),
            ..RetryConfig::default()
        };
        let store = b.with_allow_http(http).with_retry(retry).build()?;
        Ok(Self::new(Arc::new(store), prefix))
    }

    /// Writes and reads back the named blob `startup-check`: a gateway whose bucket,
    /// key or endpoint is wrong says so when it starts, not at a family's first upload.
    /// (A read alone cannot tell: S3 answers 404 for a missing bucket as for a missing
    /// key.)
    pub async fn check(&self) -> std::io::Result<()> {
        const NAME: &str = "startup-check";
        let text = b"written by a xuanfang gateway at start";
        self.put_named(NAME, text).await?;
        match self.get_named(NAME).await? {
            Some(b) if b == text => Ok(()),
            _ => Err(std::io::Error::other(
                "the store did not return what was just written",
            )),
        }
    }

    fn key(&self, parts: &[&str]) -> Path {
        let mut key = self.prefix.clone();
        for p in parts {
            if !key.is_empty() {
                key.push('/');
            }
            key.push_str(p);
        }
        Path::from(key)
    }

    async fn read(&self, key: &Path) -> std::io::Result<Option<Vec<u8>>> {
        match self.store.get(key).await {
            Ok(got) => Ok(Some(got.bytes().await?.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[async_trait]
impl BlobStore for ObjectBlobs {
    async fn put(&self, bytes: &[u8], content_type: &str) -> std::io::Result<BlobRef> {
        let r = new_ref(bytes, content_type);
        let payload = PutPayload::from(bytes.to_vec());
        self.store.put(&self.key(&[&r.id]), payload).await?;
        Ok(r)
    }
    async fn get(&self, blob: &BlobRef) -> std::io::Result<Option<Vec<u8>>> {
        if !is_our_id(&blob.id) {
            return Ok(None);
        }
        let held = self.read(&self.key(&[&blob.id])).await?;
        Ok(held.and_then(|b| checked(blob, b)))
    }
    async fn put_named(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        if !is_blob_name(name) {
            return Err(bad_name(name));
        }
        let payload = PutPayload::from(bytes.to_vec());
        self.store
            .put(&self.key(&[NAMED_DIR, name]), payload)
            .await?;
        Ok(())
    }
    async fn get_named(&self, name: &str) -> std::io::Result<Option<Vec<u8>>> {
        if !is_blob_name(name) {
            return Ok(None);
        }
        self.read(&self.key(&[NAMED_DIR, name])).await
    }
    async fn delete(&self, blob: &BlobRef) -> std::io::Result<()> {
        if !is_our_id(&blob.id) {
            return Err(bad_name(&blob.id));
        }
        // S3 answers a delete of a missing key with success; other stores may not.
        match self.store.delete(&self.key(&[&blob.id])).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;

    #[tokio::test]
    async fn blobs_live_under_the_prefix_and_a_changed_one_is_not_served() {
        let mem = Arc::new(InMemory::new());
        let blobs = ObjectBlobs::new(mem.clone(), "/hub/blobs/");
        let a = blobs.put(b"front", "image/png").await.unwrap();
        assert_eq!(blobs.get(&a).await.unwrap().as_deref(), Some(&b"front"[..]));
        let key = Path::from(format!("hub/blobs/{}", a.id));
        assert!(mem.head(&key).await.is_ok());

        mem.put(&key, PutPayload::from_static(b"FRONT"))
            .await
            .unwrap();
        assert_eq!(blobs.get(&a).await.unwrap(), None);

        blobs.put_named("identities-x", b"sealed").await.unwrap();
        let named = Path::from("hub/blobs/named/identities-x");
        assert!(mem.head(&named).await.is_ok());
        assert_eq!(
            blobs.get_named("identities-x").await.unwrap().as_deref(),
            Some(&b"sealed"[..])
        );
        assert_eq!(blobs.get_named("nothing").await.unwrap(), None);
        assert!(blobs.put_named("../x", b"").await.is_err());

        blobs.delete(&a).await.unwrap();
        blobs.delete(&a).await.unwrap();
        assert_eq!(blobs.get(&a).await.unwrap(), None);
        let mut odd = a.clone();
        odd.id = "../named/identities-x".into();
        assert!(blobs.delete(&odd).await.is_err());
        assert_eq!(blobs.get(&odd).await.unwrap(), None);
    }

    #[test]
    fn a_blob_url_names_a_bucket() {
        let opts = S3Options {
            endpoint: Some("http://127.0.0.1:9".into()),
            region: Some("us-east-1".into()),
            ..S3Options::default()
        };
        for bad in ["/var/blobs", "s3://", "s3:///x", "s3://b/../x", "file:///x"] {
            assert!(ObjectBlobs::s3(bad, &opts).is_err(), "{bad}");
        }
        let b = ObjectBlobs::s3("s3://photos/hub/a", &opts).unwrap();
        assert_eq!(b.key(&["x"]).as_ref(), "hub/a/x");
        assert_eq!(ObjectBlobs::s3("s3://photos", &opts).unwrap().prefix, "");
    }
}
