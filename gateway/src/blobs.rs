//! The blob store: files the hub names by [`BlobRef`] (card photos, signatures, later
//! the signed contract and the move-in notice). The hub holds only the reference and
//! its SHA-256; the bytes live here.
//!
//! Three backends: [`DirBlobs`] (a directory, one file per blob; the embedded engine's
//! `<data-dir>/blobs`, or a shared directory for several Redis gateways), [`ObjectBlobs`]
//! (S3 or an S3-compatible store, `--blob-url s3://…`: several gateways share it without
//! NFS) and [`MemoryBlobs`] (tests).
//!
//! The trait is async: an S3 store answers over the network, and the directory's file
//! calls run on tokio's blocking pool rather than on a worker of the runtime.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use async_trait::async_trait;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use xuanfang_hub::blob::{BlobRef, Sha256 as Digest256};

mod object;
pub use object::{BlobUrlError, ObjectBlobs, S3Options};

/// The SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&Sha256::digest(bytes));
    out
}

/// Stores and reads blobs. Ids are the store's own (random), never a client's.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Stores `bytes` (already checked) and names them.
    async fn put(&self, bytes: &[u8], content_type: &str) -> std::io::Result<BlobRef>;
    /// The bytes of `blob`, when held and matching its SHA-256 (bytes changed since they
    /// were stored are never served: `None`).
    async fn get(&self, blob: &BlobRef) -> std::io::Result<Option<Vec<u8>>>;
    /// Stores `bytes` under a name the gateway chose ([`is_blob_name`]), replacing what
    /// the name held: files found by what they are for (a batch's sealed identities), not
    /// by a reference some record holds.
    async fn put_named(&self, name: &str, bytes: &[u8]) -> std::io::Result<()>;
    /// The bytes stored under `name`, if any.
    async fn get_named(&self, name: &str) -> std::io::Result<Option<Vec<u8>>>;
    /// Removes `blob` (durably: once this answers, a restart does not bring it back). A
    /// blob already gone is not an error. Only for blobs no record or signing log entry
    /// names: the caller stored them itself moments ago and the engine did not keep
    /// them ([`crate::signing_api::fresh`]).
    async fn delete(&self, blob: &BlobRef) -> std::io::Result<()>;
}

/// A name [`BlobStore::put_named`] takes: 1–100 of `[a-z0-9-]` (no path tricks).
pub fn is_blob_name(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'-')
}

fn bad_name(name: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("not a blob name: {name:?}"),
    )
}

fn new_ref(bytes: &[u8], content_type: &str) -> BlobRef {
    let id: [u8; 16] = rand::random();
    BlobRef {
        id: hex::encode(id),
        sha256: Digest256(sha256(bytes)),
        content_type: content_type.to_owned(),
        bytes: bytes.len() as u64,
    }
}

/// `bytes` read for `blob`, unless they are not what was stored: changed bytes are
/// never served (and an operator hears of it).
fn checked(blob: &BlobRef, bytes: Vec<u8>) -> Option<Vec<u8>> {
    if sha256(&bytes) == blob.sha256.0 {
        return Some(bytes);
    }
    tracing::error!(blob = %blob.id, "blob store: the bytes differ from their SHA-256; not served");
    None
}

/// A blob id this store could have made: 32 lowercase hex digits (no path tricks).
fn is_our_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Blobs in memory.
#[derive(Default)]
pub struct MemoryBlobs {
    held: Mutex<HashMap<String, Vec<u8>>>,
    named: Mutex<HashMap<String, Vec<u8>>>,
}

impl MemoryBlobs {
    /// How many blobs are held (tests check that a refused or repeated request stored
    /// nothing).
    pub fn len(&self) -> usize {
        self.held.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl BlobStore for MemoryBlobs {
    async fn put(&self, bytes: &[u8], content_type: &str) -> std::io::Result<BlobRef> {
        let r = new_ref(bytes, content_type);
        self.held.lock().insert(r.id.clone(), bytes.to_vec());
        Ok(r)
    }
    async fn get(&self, blob: &BlobRef) -> std::io::Result<Option<Vec<u8>>> {
        let held = self.held.lock().get(&blob.id).cloned();
        Ok(held.and_then(|b| checked(blob, b)))
    }
    async fn put_named(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        if !is_blob_name(name) {
            return Err(bad_name(name));
        }
        self.named.lock().insert(name.to_owned(), bytes.to_vec());
        Ok(())
    }
    async fn get_named(&self, name: &str) -> std::io::Result<Option<Vec<u8>>> {
        Ok(self.named.lock().get(name).cloned())
    }
    async fn delete(&self, blob: &BlobRef) -> std::io::Result<()> {
        self.held.lock().remove(&blob.id);
        Ok(())
    }
}

/// Writes `bytes` to `dir/name` through a temporary file (0600, synced, renamed).
fn write_file(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(
        "{name}.{}.tmp",
        hex::encode(rand::random::<[u8; 8]>())
    ));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    // The rename itself is durable only once the directory is synced.
    std::fs::File::open(dir)?.sync_all()
}

/// Blobs as files of a directory (created 0700; files 0600, written to a temporary name
/// and renamed, so a reader never sees half a file).
pub struct DirBlobs {
    dir: PathBuf,
}

impl DirBlobs {
    pub fn open(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(Self { dir })
    }
}

impl DirBlobs {
    /// Runs `f` with the directory on tokio's blocking pool (file calls and fsync block).
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&std::path::Path) -> std::io::Result<T> + Send + 'static,
    ) -> std::io::Result<T> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || f(&dir))
            .await
            .map_err(std::io::Error::other)?
    }
}

/// The bytes of `path`, `None` when there is no such file.
fn read_if_there(path: &std::path::Path) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[async_trait]
impl BlobStore for DirBlobs {
    async fn put(&self, bytes: &[u8], content_type: &str) -> std::io::Result<BlobRef> {
        let r = new_ref(bytes, content_type);
        let (id, bytes) = (r.id.clone(), bytes.to_vec());
        self.blocking(move |dir| write_file(dir, &id, &bytes))
            .await?;
        Ok(r)
    }
    async fn get(&self, blob: &BlobRef) -> std::io::Result<Option<Vec<u8>>> {
        if !is_our_id(&blob.id) {
            return Ok(None);
        }
        let id = blob.id.clone();
        let held = self
            .blocking(move |dir| read_if_there(&dir.join(id)))
            .await?;
        Ok(held.and_then(|b| checked(blob, b)))
    }
    async fn put_named(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        if !is_blob_name(name) {
            return Err(bad_name(name));
        }
        let (name, bytes) = (name.to_owned(), bytes.to_vec());
        self.blocking(move |dir| {
            let dir = dir.join(NAMED_DIR);
            std::fs::create_dir_all(&dir)?;
            write_file(&dir, &name, &bytes)
        })
        .await
    }
    async fn get_named(&self, name: &str) -> std::io::Result<Option<Vec<u8>>> {
        if !is_blob_name(name) {
            return Ok(None);
        }
        let name = name.to_owned();
        self.blocking(move |dir| read_if_there(&dir.join(NAMED_DIR).join(name)))
            .await
    }
    async fn delete(&self, blob: &BlobRef) -> std::io::Result<()> {
        if !is_our_id(&blob.id) {
            return Err(bad_name(&blob.id));
        }
        let id = blob.id.clone();
        self.blocking(move |dir| {
            match std::fs::remove_file(dir.join(id)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            }
            // The unlink itself is durable only once the directory is synced.
            std::fs::File::open(dir)?.sync_all()
        })
        .await
    }
}

/// The sub-directory of [`DirBlobs`] holding named blobs (apart from the random ids).
const NAMED_DIR: &str = "named";

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_type().unwrap().is_file())
            .count()
    }

    #[tokio::test]
    async fn a_deleted_blob_is_gone_and_deleting_it_again_is_no_error() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = DirBlobs::open(dir.path()).unwrap();
        let (a, b) = (
            blobs.put(b"front", "image/png").await.unwrap(),
            blobs.put(b"back", "image/png").await.unwrap(),
        );
        assert_eq!(files(dir.path()), 2);
        blobs.delete(&a).await.unwrap();
        assert_eq!(files(dir.path()), 1);
        assert_eq!(blobs.get(&a).await.unwrap(), None);
        assert_eq!(blobs.get(&b).await.unwrap().as_deref(), Some(&b"back"[..]));
        blobs.delete(&a).await.unwrap();
        // Not an id this store makes: refused, nothing removed.
        let mut odd = b.clone();
        odd.id = "../named".into();
        assert!(blobs.delete(&odd).await.is_err());
        assert_eq!(files(dir.path()), 1);

        let mem = MemoryBlobs::default();
        let c = mem.put(b"sig", "image/png").await.unwrap();
        mem.delete(&c).await.unwrap();
        mem.delete(&c).await.unwrap();
        assert!(mem.is_empty());
    }
}
