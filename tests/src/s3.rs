//! A real S3-compatible server for tests: `s3s-fs` (the s3s project's S3 server over a
//! directory) in-process on a loopback port, SigV4 checked with one test key pair, the
//! bucket [`BUCKET`] made. The signing tests of the tests crate and the gateway's
//! process-level tests both talk to it over HTTP, as they would to S3.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;

pub const ACCESS_KEY: &str = "xuanfang-test";
pub const SECRET_KEY: &str = "xuanfang-test-secret-key";
pub const BUCKET: &str = "signing";

/// The server and its backing directory; serves until the test's runtime ends.
pub struct S3Server {
    pub addr: SocketAddr,
    root: tempfile::TempDir,
}

impl S3Server {
    pub async fn start() -> S3Server {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(root.path().join(BUCKET)).expect("bucket dir");
        let fs = s3s_fs::FileSystem::new(root.path()).expect("s3s-fs over the tempdir");
        let mut b = s3s::service::S3ServiceBuilder::new(fs);
        b.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = b.build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("its address");
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let service = service.clone();
                tokio::spawn(async move {
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service);
                    let _ = conn.await;
                });
            }
        });
        S3Server { addr, root }
    }

    /// `http://127.0.0.1:<port>`, the endpoint a client is given.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where the objects under `prefix` of [`BUCKET`] lie on disk.
    pub fn dir(&self, prefix: &str) -> PathBuf {
        self.root.path().join(BUCKET).join(prefix)
    }
}

/// The files directly in `dir`, sorted (none when it does not exist yet): the objects of
/// a prefix, or a data directory's blobs.
pub fn files(dir: &Path) -> Vec<String> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = read
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}
