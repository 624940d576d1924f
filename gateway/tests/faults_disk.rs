//! Faults of the embedded engine's disk: the journal can no longer grow (a full disk,
//! made with a file-size limit on the running process, `RLIMIT_FSIZE`, which needs no
//! root), and a read-only data directory. The process says so clearly, claims no change
//! it did not write, keeps serving what is durable, and a restart with a healthy disk
//! has every acknowledged answer.

use crate::common;

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use xuanfang_hub::protocol::{ClientMsg, ServerMsg};
use xuanfang_hub::{ErrorCode, EventKind, Stage};
use xuanfang_tests::history::History;

const BATCH: &str = "disk";

/// A batch in its formal window (60 s: no deadline during the test) on `serve`.
async fn batch_in_window(serve: &Serve) {
    let start = server_time(&serve.base).await + 1_500;
    upload(&serve.base, BATCH, 8, 4, start, 60).await;
    until_server_time(&serve.base, start).await;
}

/// The code of a refusal or error reply.
fn code(r: &Result<ServerMsg, String>) -> Option<ErrorCode> {
    match r {
        Ok(ServerMsg::Error { code, .. }) => Some(*code),
        _ => None,
    }
}

fn declare(p: &mut Player) -> ClientMsg {
    ClientMsg::Declare {
        req_id: p.req_id(),
        stage: Stage::Formal,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_changes_clearly_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let engine: Vec<OsString> = vec!["--data-dir".into(), data.clone().into()];
    let mut serve = Serve::start(&engine, dir.path()).await;
    batch_in_window(&serve).await;
    let history = History::new();
    let mut f1 = Player::new("F01", &[serve.port]);
    f1.enter(&["U01"], &history).await;
    f1.confirm_first(&["U01"], &history).await;

    // The disk is full: the journal cannot grow by a byte.
    let journal = data.join(format!("{BATCH}.journal"));
    let size = std::fs::metadata(&journal).unwrap().len();
    let pid = serve.child.as_ref().unwrap().id();
    let st = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--fsize={size}:{size}")])
        .status()
        .expect("prlimit (util-linux)");
    assert!(st.success());

    // A change is refused with a retryable error, and so is the next (the batch refuses
    // changes until a restart); nothing is claimed.
    let mut f2 = Player::new("F02", &[serve.port]);
    let d = declare(&mut f2);
    let first = f2.once(&d, &history).await;
    assert_eq!(code(&first), Some(ErrorCode::Internal), "{first:?}");
    let mut f3 = Player::new("F03", &[serve.port]);
    let d3 = declare(&mut f3);
    let next = f3.once(&d3, &history).await;
    assert_eq!(code(&next), Some(ErrorCode::Internal), "{next:?}");
    assert_eq!(std::fs::metadata(&journal).unwrap().len(), size);
    // The process is up and still serves what is durable.
    assert!(
        serve.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "{}",
        serve.log_text()
    );
    let (status, me) = get(
        format!("{}/api/me?batch={BATCH}", serve.base),
        Some(&token("F01", xuanfang_gateway::auth::Role::Family)),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(me["outcome"]["unit"], "U01", "{me}");
    assert!(
        serve.log_text().contains("journal write failed"),
        "the log says why: {}",
        serve.log_text()
    );

    // Space again (a new process has no limit): the restart has every acknowledged
    // answer, and the refused request, sent again with its req_id, is decided now.
    serve.kill9();
    serve.restart().await;
    let r = f2.answer(&d, &history).await;
    assert!(matches!(r, ServerMsg::Ok { .. }), "{r:?}");
    let log = events(&serve.base, BATCH).await;
    let declared = |f: &str| {
        log.iter()
            .filter(
                |e| matches!(&e.event, EventKind::Declared { family, .. } if family.as_str() == f),
            )
            .count()
    };
    assert_eq!(declared("F02"), 1);
    assert_eq!(
        declared("F03"),
        0,
        "a change answered with an error was not kept"
    );
    history.check(&log).unwrap_or_else(|v| panic!("{v}"));
}

/// Makes `dir` read-only for this process: a read-only bind mount for root (whom
/// permissions do not stop), else the permission bits. Undone on drop.
struct ReadOnly<'a> {
    dir: &'a Path,
    mounted: bool,
}

impl<'a> ReadOnly<'a> {
    fn new(dir: &'a Path) -> Self {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout.starts_with(b"0\n"))
            .unwrap_or(false);
        if root {
            let d = dir.to_str().unwrap();
            let ok = |args: &[&str]| {
                Command::new("mount")
                    .args(args)
                    .stderr(Stdio::null())
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false)
            };
            let mounted = ok(&["--bind", d, d]);
            if mounted && !ok(&["-o", "remount,bind,ro", d]) {
                let _ = Command::new("umount").arg(d).status();
                return ReadOnly {
                    dir,
                    mounted: false,
                };
            }
            ReadOnly { dir, mounted }
        } else {
            set_mode(dir, 0o555);
            ReadOnly {
                dir,
                mounted: false,
            }
        }
    }
}

fn set_mode(dir: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode & 0o444)).unwrap();
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
}

impl Drop for ReadOnly<'_> {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(self.dir).status();
        } else {
            set_mode(self.dir, 0o755);
            use std::os::unix::fs::PermissionsExt;
            for e in std::fs::read_dir(self.dir).unwrap() {
                let p = e.unwrap().path();
                let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_data_dir_is_refused_by_name_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let engine: Vec<OsString> = vec!["--data-dir".into(), data.clone().into()];
    let mut serve = Serve::start(&engine, dir.path()).await;
    batch_in_window(&serve).await;
    let history = History::new();
    let mut f1 = Player::new("F01", &[serve.port]);
    f1.enter(&["U01"], &history).await;
    f1.confirm_first(&["U01"], &history).await;
    serve.kill9();

    {
        let _ro = ReadOnly::new(&data);
        // Root in a container without CAP_SYS_ADMIN can neither mount nor be stopped by
        // permissions: then there is no read-only directory to test, and we say so.
        if std::fs::write(data.join("probe"), b"x").is_ok() {
            eprintln!("SKIPPED: cannot make {} read-only here", data.display());
            let _ = std::fs::remove_file(data.join("probe"));
            return;
        }
        let out = Serve::command(&engine, free_port())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let end = Instant::now() + T;
        let mut out = out;
        let status = loop {
            if let Some(st) = out.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > end {
                let _ = out.kill();
                panic!("serve on a read-only data directory kept running");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(&mut out.stderr.take().unwrap(), &mut err).unwrap();
        assert!(!status.success());
        assert!(
            err.contains(data.to_str().unwrap()) && err.contains("Read-only")
                || err.contains("ermission denied"),
            "the error names the directory and the cause: {err}"
        );
        assert!(err.contains(data.to_str().unwrap()), "{err}");
    }

    // Writable again: everything acknowledged is there.
    serve.restart().await;
    let log = events(&serve.base, BATCH).await;
    let s = history.check(&log).unwrap_or_else(|v| panic!("{v}"));
    assert_eq!(s.confirmed, 1);
}
