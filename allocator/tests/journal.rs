//! The embedded engine's journal: what survives a restart, a torn tail, a crash, and a
//! failing disk.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use xuanfang_allocator::embedded::{journal, EmbeddedEngine, JournalOptions};
use xuanfang_allocator::{AllocError, Allocator, BoardState, FamilyRecord};
use xuanfang_hub::{
    Action, Batch, BatchId, ErrorCode, Event, FamilyId, How, ListKind, ManualClock, Millis,
    Outcome, Rejection, Selection, Session, SessionId, SessionKind, Stage, UnitId,
};

#[macro_use]
#[path = "conformance/suite.rs"]
mod suite;

use suite::{add, confirm, declare, fixture, Ctx, DL1, PRE, S1, START};

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("journal-test-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir")
}

async fn open(dir: &Path, clock: &Arc<ManualClock>) -> Ctx {
    let engine = Arc::new(EmbeddedEngine::open(dir, clock.clone()).expect("open"));
    Ctx::load(engine, clock.clone(), "journal").await
}

/// Reopens `dir` (the previous engine must be dropped) and views `batch` in it.
async fn reopen(
    dir: &Path,
    clock: &Arc<ManualClock>,
    batch: &BatchId,
) -> (Arc<dyn Allocator>, Ctx) {
    let engine: Arc<dyn Allocator> =
        Arc::new(EmbeddedEngine::open(dir, clock.clone()).expect("reopen"));
    let ctx = Ctx::attach(engine.clone(), clock.clone(), batch).await;
    (engine, ctx)
}

/// Everything an engine reports about a batch.
#[derive(Debug, PartialEq)]
struct Snapshot {
    epoch: u64,
    board: BoardState,
    results: Vec<FamilyRecord>,
    events: Vec<Event>,
    batch: Batch,
}

async fn snapshot(c: &Ctx) -> Snapshot {
    let e = &c.engine;
    Snapshot {
        epoch: e.epoch(&c.batch).await.unwrap(),
        board: e.board(&c.batch).await.unwrap(),
        results: e.results(&c.batch).await.unwrap(),
        events: e.events(&c.batch, 0, usize::MAX).await.unwrap(),
        batch: e.batch(&c.batch).await.unwrap(),
    }
}

fn journal_path(dir: &Path, batch: &BatchId) -> PathBuf {
    dir.join(journal::file_name(batch))
}

/// Some history: carts, a confirm, a closed session, an application, a publish.
async fn some_history(c: &Ctx) {
    c.at(PRE);
    c.cart("f1", &["A101", "A102"]).await;
    c.cart("f6", &["A103"]).await;
    c.at(S1);
    c.intentions("f1", &["A101"]).await;
    c.ok("f1", confirm("A101")).await;
    c.intentions("f2", &["A102", "A104"]).await;
    c.at(DL1);
    c.close("S1").await;
    c.ok("f3", Action::ApplySupplementary).await;
    let sup = Session {
        id: SessionId::new("SUP1"),
        kind: SessionKind::Supplementary,
        start: Millis(suite::SUP),
        window_ms: suite::WINDOW,
        families: vec![FamilyId::new("f3")],
    };
    c.engine.publish_supplementary(&c.batch, sup).await.unwrap();
}

#[tokio::test]
async fn reopening_replays_to_the_same_state_and_epoch() {
    let dir = temp_dir();
    let clock = Arc::new(ManualClock::new(START));
    let c = open(dir.path(), &clock).await;
    some_history(&c).await;
    let before = snapshot(&c).await;
    let batch = c.batch.clone();
    drop(c);

    let (engine, c) = reopen(dir.path(), &clock, &batch).await;
    assert_eq!(snapshot(&c).await, before);
    assert_eq!(engine.batches().await.unwrap(), vec![batch.clone()]);
    // The reopened engine goes on from there, with the next seq.
    c.at(suite::SUP);
    c.ok("f3", declare(Stage::Formal)).await;
    let events = c.events().await;
    assert_eq!(events.last().map(|e| e.seq), Some(before.board.seq + 1));
    // And a reloaded id is still taken.
    let again = engine.load_batch(fixture(&batch)).await;
    assert!(matches!(again, Err(AllocError::Rejected(r)) if r.code == ErrorCode::Conflict));
    drop((engine, c));

    let (_, c) = reopen(dir.path(), &clock, &batch).await;
    assert_eq!(c.events().await.len(), events.len());
    assert_eq!(snapshot(&c).await.epoch, before.epoch);
}

#[tokio::test]
async fn a_torn_tail_is_truncated_and_the_rest_kept() {
    let dir = temp_dir();
    let clock = Arc::new(ManualClock::new(START));
    let c = open(dir.path(), &clock).await;
    some_history(&c).await;
    let before = snapshot(&c).await;
    let batch = c.batch.clone();
    drop(c);

    let path = journal_path(dir.path(), &batch);
    let good_len = std::fs::metadata(&path).unwrap().len();
    // A frame header promising 100 bytes, and only 10 of them: a write cut by a crash.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(&100u32.to_le_bytes()).unwrap();
    f.write_all(&[0xAB; 14]).unwrap();
    drop(f);

    let (_, c) = reopen(dir.path(), &clock, &batch).await;
    assert_eq!(snapshot(&c).await, before);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), good_len);
}

#[tokio::test]
async fn a_record_with_a_bad_checksum_is_cut_with_everything_after_it() {
    let dir = temp_dir();
    let clock = Arc::new(ManualClock::new(START));
    let c = open(dir.path(), &clock).await;
    c.at(PRE);
    c.cart("f1", &["A101"]).await;
    let before_last = snapshot(&c).await;
    let path = journal_path(dir.path(), &c.batch);
    let len_before_last = std::fs::metadata(&path).unwrap().len();
    c.ok("f1", add(ListKind::Cart, "A102")).await;
    let batch = c.batch.clone();
    drop(c);

    // Flip one byte of the last record's payload.
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xFF;
    std::fs::write(&path, &bytes).unwrap();

    let (_, c) = reopen(dir.path(), &clock, &batch).await;
    assert_eq!(snapshot(&c).await, before_last);
    assert_eq!(c.view("f1").await.cart, suite::ids(&["A101"]));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len_before_last);
}

#[tokio::test]
async fn a_journal_without_one_whole_record_is_removed() {
    let dir = temp_dir();
    let path = dir.path().join("half-loaded.journal");
    std::fs::write(&path, [1, 2, 3, 4, 5]).unwrap();
    let clock = Arc::new(ManualClock::new(START));
    let engine = EmbeddedEngine::open(dir.path(), clock).unwrap();
    assert!(engine.batches().await.unwrap().is_empty());
    assert!(!path.exists());
}

#[tokio::test]
async fn ok_req_ids_survive_a_restart() {
    let dir = temp_dir();
    let clock = Arc::new(ManualClock::new(START));
    let c = open(dir.path(), &clock).await;
    c.at(PRE);
    c.cart("f1", &[]).await;
    let first = c.act_req("f1", "add-1", add(ListKind::Cart, "A101")).await;
    assert!(first.is_ok());
    // A no-op ok (declaring again) is remembered too.
    let noop = c
        .act_req("f1", "decl-again", declare(Stage::Preselection))
        .await;
    assert!(noop.is_ok());
    let batch = c.batch.clone();
    drop(c);

    let (_, c) = reopen(dir.path(), &clock, &batch).await;
    let events = c.events().await.len();
    let again = c.act_req("f1", "add-1", add(ListKind::Cart, "A101")).await;
    assert_eq!(again.map(|v| v.cart), Ok(suite::ids(&["A101"])));
    c.at(S1);
    let again = c
        .act_req("f1", "decl-again", declare(Stage::Preselection))
        .await;
    assert!(again.is_ok(), "{again:?}");
    assert_eq!(c.events().await.len(), events);
    // A new request id is decided afresh.
    let fresh = c.act_req("f1", "add-2", add(ListKind::Cart, "A101")).await;
    assert_eq!(
        fresh.map(|v| v.cart),
        Err(Rejection::new(ErrorCode::WindowClosed))
    );
}

#[tokio::test]
async fn a_refusal_is_decided_again_after_a_restart() {
    // Documented: refusals are not journaled (they changed nothing).
    let dir = temp_dir();
    let clock = Arc::new(ManualClock::new(START));
    let c = open(dir.path(), &clock).await;
    c.at(PRE - 1);
    let refused = c.act_req("f1", "early", declare(Stage::Preselection)).await;
    assert_eq!(refused, Err(Rejection::new(ErrorCode::WindowClosed)));
    let batch = c.batch.clone();
    drop(c);

    clock.set(Millis(PRE));
    let (_, c) = reopen(dir.path(), &clock, &batch).await;
    let now = c.act_req("f1", "early", declare(Stage::Preselection)).await;
    assert_eq!(now.map(|v| v.preselect_declared_at), Ok(Some(Millis(PRE))));
}

/// A sync the test can hold shut: the journal writer waits in it until released.
#[derive(Default)]
struct Gate {
    shut: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn hold(&self) {
        *self.shut.lock().unwrap() = true;
    }

    fn release(&self) {
        *self.shut.lock().unwrap() = false;
        self.opened.notify_all();
    }

    /// Called by the writer before each sync.
    fn pass(&self) {
        let shut = self.shut.lock().unwrap();
        drop(self.opened.wait_while(shut, |shut| *shut).unwrap());
    }
}

/// Opens the gate when dropped, so a failing test does not leave the writer stuck.
struct ReleaseOnDrop(Arc<Gate>);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// Polls `done` until it holds; panics after a minute (what it waits for takes
/// milliseconds, so only a bug gets near that).
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirms_queued_behind_a_sync_share_one_sync() {
    const N: usize = 64;
    let dir = temp_dir();
    let clock = Arc::new(ManualClock::new(START));
    let gate = Arc::new(Gate::default());
    let options = JournalOptions {
        sync: Arc::new({
            let gate = gate.clone();
            move |file: &File| {
                gate.pass();
                file.sync_data()
            }
        }),
    };
    let engine = Arc::new(EmbeddedEngine::open_with(dir.path(), clock.clone(), options).unwrap());
    let batch = BatchId::new("group-commit");
    engine.load_batch(many(&batch, N)).await.unwrap();
    let c = Ctx::attach(engine.clone(), clock.clone(), &batch).await;
    c.at(S1);
    for i in 1..=N {
        c.intentions(&format!("f{i}"), &[&format!("U{i}")]).await;
    }
    let before = engine.journal_stats();
    assert_eq!(
        before.queued, before.records,
        "the setup left records unwritten"
    );

    // Hold the writer in its next sync, then queue every confirm behind it.
    gate.hold();
    let release = ReleaseOnDrop(gate.clone());
    let tasks: Vec<_> = (1..=N)
        .map(|i| {
            let (engine, batch) = (engine.clone(), batch.clone());
            tokio::spawn(async move {
                let unit = format!("U{i}");
                engine
                    .act(&batch, &FamilyId::new(format!("f{i}")), "c", confirm(&unit))
                    .await
            })
        })
        .collect();
    wait_until("every confirm to reach the journal", || {
        engine.journal_stats().queued - before.queued == N as u64
    })
    .await;
    let held = engine.journal_stats();
    assert_eq!(
        held.records, before.records,
        "a record was written through a held sync"
    );
    assert!(
        tasks.iter().all(|t| !t.is_finished()),
        "a confirm was answered before its record was durable"
    );

    // The first group is in the held sync; everything after it is already queued, so
    // the writer takes it all as one group with one sync.
    drop(release);
    for t in tasks {
        assert!(matches!(t.await.unwrap(), Ok(Ok(_))));
    }
    let after = engine.journal_stats();
    let (records, syncs) = (after.records - before.records, after.syncs - before.syncs);
    assert_eq!(records, N as u64);
    assert!(
        syncs <= 2,
        "{N} queued confirms took {syncs} syncs, not at most 2"
    );
    assert_eq!(engine.board(&batch).await.unwrap().taken.len(), N);
}

/// A batch of `n` families in S1, each eligible for its own unit `U<i>`.
fn many(id: &BatchId, n: usize) -> Batch {
    let mut b = fixture(id);
    let template = b.units[0].clone();
    b.units = (1..=n)
        .map(|i| xuanfang_hub::Unit {
            id: UnitId::new(format!("U{i}")),
            ..template.clone()
        })
        .collect();
    let family = b.families[1].clone();
    b.families = (1..=n as u32)
        .map(|i| xuanfang_hub::Family {
            id: FamilyId::new(format!("f{i}")),
            rank: i,
            ..family.clone()
        })
        .collect();
    b.sessions.truncate(1);
    b.sessions[0].families = b.families.iter().map(|f| f.id.clone()).collect();
    b
}

// ---------------------------------------------------------------- child processes

// The child is this test binary run again: `journal_crash_child` below runs the
// example's code (included as a module), so no test builds anything with cargo.
#[path = "../examples/journal_crash.rs"]
#[allow(dead_code)]
mod journal_crash;

const CHILD_DIR: &str = "XUANFANG_JOURNAL_CHILD_DIR";
const CHILD_MODE: &str = "XUANFANG_JOURNAL_CHILD_MODE";

/// Not a test: the crash tests' child process. Ignored, so a normal run skips it; the
/// parent runs it by name with `--ignored`, pointing it at a journal directory.
#[test]
#[ignore = "the child process of the crash tests, started by them"]
fn journal_crash_child() {
    let (Ok(dir), Ok(mode)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_MODE)) else {
        return;
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(journal_crash::run(PathBuf::from(dir), &mode))
        .expect("the child ran");
}

/// The crash child on `dir` in `mode`, as a command to spawn.
fn crash_child(dir: &Path, mode: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().expect("the test binary"));
    c.args([
        "journal_crash_child",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
        "--quiet",
    ])
    .env(CHILD_DIR, dir)
    .env(CHILD_MODE, mode);
    c
}

const CRASH_BATCH: &str = journal_crash::BATCH;

/// Every `ack <family> <unit>` line of a child's output.
fn acks(lines: &[String]) -> Vec<(String, String)> {
    lines
        .iter()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("ack")).then(|| {
                (
                    w.next().unwrap_or_default().to_owned(),
                    w.next().unwrap_or_default().to_owned(),
                )
            })
        })
        .collect()
}

/// Checks that every acknowledged confirm is in the journal of `dir`, and that the log
/// replays; returns the number of families with a unit.
async fn check_acks(dir: &Path, acked: &[(String, String)]) -> usize {
    let clock = Arc::new(ManualClock::new(START));
    let engine = EmbeddedEngine::open(dir, clock).expect("reopen after the child");
    let batch = BatchId::new(CRASH_BATCH);
    for (family, unit) in acked {
        let view = engine
            .family(&batch, &FamilyId::new(family.as_str()))
            .await
            .unwrap();
        match view.outcome {
            Some(Outcome::Selected { unit: u, how, .. }) => {
                assert_eq!(
                    (u.as_str(), how),
                    (unit.as_str(), How::Confirmed),
                    "{family}"
                );
            }
            other => panic!("acknowledged confirm of {family} lost: {other:?}"),
        }
    }
    let events = engine.events(&batch, 0, usize::MAX).await.unwrap();
    let rebuilt = Selection::replay(&events).expect("the log replays");
    assert_eq!(rebuilt.seq(), engine.board(&batch).await.unwrap().seq);
    rebuilt.taken().len()
}

#[tokio::test]
async fn every_acknowledged_confirm_survives_kill_9() {
    let dir = temp_dir();
    let mut child = crash_child(dir.path(), "crash")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn journal_crash");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    let mut line = String::new();
    // Kill it once it has acknowledged a fair number, well before it is done.
    while acks(&lines).len() < 60 {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        lines.push(line.trim().to_owned());
    }
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    // Whatever it printed before dying counts as acknowledged too.
    for l in out.lines() {
        lines.push(l.unwrap());
    }
    assert!(
        !lines.iter().any(|l| l == "done"),
        "the child finished before the kill"
    );
    let acked = acks(&lines);
    assert!(acked.len() >= 60, "{lines:?}");
    let taken = check_acks(dir.path(), &acked).await;
    assert!(taken >= acked.len());

    // A second run picks up the same journal and goes on.
    let mut child = crash_child(dir.path(), "crash")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let mut more = Vec::new();
    for l in out.lines() {
        let l = l.unwrap();
        let ready = l == "ready";
        more.push(l);
        if ready {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(more.last().map(String::as_str), Some("ready"), "{more:?}");
}

#[tokio::test]
async fn a_failing_disk_is_an_error_reply_and_loses_no_acknowledged_change() {
    let dir = temp_dir();
    let output = crash_child(dir.path(), "full-disk")
        .output()
        .expect("run journal_crash");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<String> = stdout.lines().map(str::to_owned).collect();
    assert!(
        output.status.success(),
        "child failed: {lines:?} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let failed: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("journal_error "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(!failed.is_empty(), "no write failed: {lines:?}");
    assert!(
        lines.iter().any(|l| l == "refused_after_failure"),
        "{lines:?}"
    );
    assert!(!lines.iter().any(|l| l.starts_with("error ")), "{lines:?}");
    let acked = acks(&lines);
    assert!(!acked.is_empty(), "{lines:?}");
    check_acks(dir.path(), &acked).await;
    // A family whose confirm failed did not get its unit.
    let clock = Arc::new(ManualClock::new(START));
    let engine = EmbeddedEngine::open(dir.path(), clock).unwrap();
    let batch = BatchId::new(CRASH_BATCH);
    for f in failed {
        let view = engine.family(&batch, &FamilyId::new(f)).await.unwrap();
        assert_eq!(view.outcome, None, "{f}'s failed change is in the journal");
    }
}
