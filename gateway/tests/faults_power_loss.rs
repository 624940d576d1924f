//! Faults of a real disk under a running `xuanfang serve --data-dir`: the data directory
//! on an ext4 file system in a loop device, cut with `EXT4_IOC_SHUTDOWN`.
//!
//! - **The disk fails while running** (the shutdown, the process left running): every
//!   change after it is refused with a retryable error and nothing is claimed; the
//!   process stays up and says why.
//! - **Power loss** (the shutdown with `NOLOGFLUSH`: what was not synced is gone, as when
//!   the power goes; then the process dies with the machine): after a remount, which
//!   replays the file system's own journal, the restarted process has every answer it
//!   gave. A `kill -9` (faults_serve_kill.rs) cannot show this: the kernel still writes
//!   a killed process's unsynced pages, so an answer given before its fsync would survive
//!   there and is lost here.
//!
//! Needs root (loop devices and mounts); elsewhere it says SKIPPED and passes.

use crate::common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use xuanfang_hub::protocol::{ClientMsg, ServerMsg};
use xuanfang_hub::{ErrorCode, Stage};
use xuanfang_tests::history::History;

const BATCH: &str = "power";
const FAMILIES: usize = 16;

/// `_IOR('X', 125, __u32)`: ext4's "going down" (the same number as XFS's).
const EXT4_IOC_SHUTDOWN: libc::c_ulong =
    (2 << 30) | (4 << 16) | ((b'X' as libc::c_ulong) << 8) | 125;
/// Stop at once without flushing the file system's journal: a power cut.
const EXT4_GOING_FLAGS_NOLOGFLUSH: u32 = 2;

/// An ext4 file system in a loop device, mounted at `mnt`; unmounted and detached on drop.
struct LoopFs {
    dev: String,
    mnt: PathBuf,
}

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd)
        .args(args)
        .stderr(Stdio::piped())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

impl LoopFs {
    /// `None` where loop devices or mounts are not allowed (not root, a container).
    fn new(dir: &Path) -> Option<LoopFs> {
        let img = dir.join("disk.img");
        let img_s = img.to_str()?;
        run("truncate", &["-s", "128M", img_s])?;
        run("mkfs.ext4", &["-q", "-F", img_s])?;
        let dev = run("losetup", &["-f", "--show", img_s])?;
        let mnt = dir.join("mnt");
        std::fs::create_dir_all(&mnt).ok()?;
        let fs = LoopFs { dev, mnt };
        fs.mount().then_some(fs)
    }

    fn mount(&self) -> bool {
        run("mount", &[&self.dev, self.mnt.to_str().unwrap()]).is_some()
    }

    /// The power goes: nothing unsynced reaches the disk, and every later write fails.
    fn power_cut(&self) {
        use std::os::fd::AsRawFd;
        let d = std::fs::File::open(&self.mnt).unwrap();
        let flags = EXT4_GOING_FLAGS_NOLOGFLUSH;
        // SAFETY: a valid descriptor and a pointer to a u32 that outlives the call.
        let r = unsafe { libc::ioctl(d.as_raw_fd(), EXT4_IOC_SHUTDOWN as _, &flags) };
        assert_eq!(
            r,
            0,
            "EXT4_IOC_SHUTDOWN: {}",
            std::io::Error::last_os_error()
        );
    }

    /// The machine is back: mount again (ext4 replays its journal).
    fn remount(&self) {
        assert!(
            run("umount", &[self.mnt.to_str().unwrap()]).is_some(),
            "umount"
        );
        assert!(self.mount(), "mount again");
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = run("umount", &[self.mnt.to_str().unwrap()]);
        let _ = run("losetup", &["-d", &self.dev]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_mid_burst_loses_no_acknowledged_answer() {
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = LoopFs::new(dir.path()) else {
        eprintln!("SKIPPED: no loop device or mount here (needs root)");
        return;
    };
    let data = fs.mnt.join("data");
    let engine: Vec<OsString> = vec!["--data-dir".into(), data.into()];
    // The process's log stays off the disk that fails.
    let mut serve = Serve::start(&engine, dir.path()).await;
    let start = server_time(&serve.base).await + 1_500;
    // One family more than the burst: the probe, which only acts after the cut.
    upload(&serve.base, BATCH, 2 * FAMILIES, FAMILIES + 1, start, 120).await;
    until_server_time(&serve.base, start).await;

    let history = Arc::new(History::new());
    let mut tasks = Vec::new();
    for i in 1..=FAMILIES {
        let (history, port) = (history.clone(), serve.port);
        tasks.push(tokio::spawn(async move {
            let (f, units) = plan(i, FAMILIES);
            let units: Vec<&str> = units.iter().map(String::as_str).collect();
            let mut p = Player::new(&f, &[port]);
            let units = p.enter(&units, &history).await;
            p.confirm_first(&units, &history).await;
            p.trouble
        }));
    }
    // Mid-burst: some answers given, not all (each family asks four or five times).
    let end = Instant::now() + T;
    while history.acks().len() < FAMILIES {
        assert!(Instant::now() < end, "the burst never got going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    fs.power_cut();
    let at_cut = history.acks().len();

    // The disk is gone but the process is not: a change is refused, retryably, and
    // nothing is claimed.
    let mut probe = Player::new(&format!("F{:02}", FAMILIES + 1), &[serve.port]);
    let declare = ClientMsg::Declare {
        req_id: probe.req_id(),
        stage: Stage::Formal,
    };
    let refused = probe.once(&declare, &history).await;
    assert!(
        matches!(
            refused,
            Ok(ServerMsg::Error {
                code: ErrorCode::Internal,
                ..
            })
        ),
        "a change on a failed disk: {refused:?}"
    );
    assert!(
        serve.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "the process stays up: {}",
        serve.log_text()
    );
    assert!(
        serve.log_text().contains("journal write failed"),
        "the log says why: {}",
        serve.log_text()
    );

    // The machine goes down with the power and comes back.
    serve.kill9();
    fs.remount();
    serve.restart().await;

    let mut saw_cut = 0;
    for t in tasks {
        saw_cut += usize::from(!t.await.unwrap().is_empty());
    }
    // The probe's refused request, sent again, is decided now.
    let again = probe.answer(&declare, &history).await;
    assert!(matches!(again, ServerMsg::Ok { .. }), "{again:?}");
    let log = events(&serve.base, BATCH).await;
    let summary = history.check(&log).unwrap_or_else(|v| panic!("{v}"));
    assert!(
        at_cut < summary.acks && saw_cut > 0,
        "the cut fell inside the burst: {at_cut} of {} answers before it, {saw_cut} phones saw it",
        summary.acks
    );
    // Every family of the burst confirmed (the second intentions are all distinct).
    assert_eq!(summary.confirmed, FAMILIES, "{summary:?}");

    // A second restart replays the same log.
    serve.kill9();
    serve.restart().await;
    assert_eq!(events(&serve.base, BATCH).await, log);
}
