//! A child process for the journal's crash tests (`tests/journal.rs`).
//!
//! `journal_crash <dir> crash`: opens an embedded engine journaling into `<dir>`, loads
//! a batch of many families (unless the journal already holds it), then confirms one
//! unit per family, several families at once, printing `ack <family> <unit>` (flushed)
//! after each acknowledged confirm. The parent kills it with SIGKILL mid-run and checks
//! that every acknowledged confirm survived.
//!
//! `journal_crash <dir> full-disk`: the same, but first caps the size of files this
//! process may write (RLIMIT_FSIZE, with SIGXFSZ ignored) a little above the journal's
//! size, so writes soon fail with EFBIG: a real write error. Prints
//! `journal_error <family>` for each action refused with `AllocError::Journal`,
//! `refused_after_failure` if a later action is refused too, then `done`.
//!
//! The crash tests do not build this example: they include this file as a module and run
//! their own test binary again as the child (`journal_crash_child`), so the child is always
//! the code under test and the test needs no `cargo build` of its own.

use std::error::Error;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use xuanfang_allocator::embedded::{journal, EmbeddedEngine};
use xuanfang_allocator::{AllocError, Allocator};
use xuanfang_hub::{
    Action, Batch, BatchId, Edit, Family, FamilyId, Layout, ListKind, ManualClock, Millis, Session,
    SessionId, SessionKind, Stage, Unit, UnitId,
};

/// Families (and units) in the batch: enough that a kill lands mid-run.
const FAMILIES: u32 = 1000;
/// Families confirming at once.
const WORKERS: u32 = 4;
const PRE: i64 = 1_750_030_000_000;
const START: i64 = PRE + 3_600_000;

/// The batch id the crash tests use.
pub const BATCH: &str = "crash-batch";

fn batch(id: &BatchId) -> Batch {
    let layout = Layout::new("一房一厅");
    let units = (1..=FAMILIES)
        .map(|i| Unit {
            id: UnitId::new(format!("U{i}")),
            building: "1栋".to_owned(),
            number: format!("{i}"),
            floor: 1,
            layout: layout.clone(),
            area: 40.0,
            orientation: "南".to_owned(),
            rent: 1000.0,
        })
        .collect();
    let families: Vec<Family> = (1..=FAMILIES)
        .map(|i| Family {
            id: FamilyId::new(format!("f{i}")),
            name: format!("家*{i}"),
            rank: i,
            session: SessionId::new("S1"),
            eligible_layouts: vec![layout.clone()],
        })
        .collect();
    Batch {
        id: id.clone(),
        name: "crash test".to_owned(),
        preselect_start: Millis(PRE),
        preselect_end: None,
        utc_offset_minutes: 480,
        units,
        sessions: vec![Session {
            id: SessionId::new("S1"),
            kind: SessionKind::Formal,
            start: Millis(START),
            window_ms: 3_600_000,
            families: families.iter().map(|f| f.id.clone()).collect(),
        }],
        families,
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // The parent reads lines as they come; a lost line only weakens the check.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Caps the size of files this process writes, so the journal's writes fail.
fn cap_file_size(bytes: u64) {
    // SAFETY: plain libc calls with valid arguments; ignoring SIGXFSZ makes the
    // write return EFBIG instead of killing the process.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::getrlimit(libc::RLIMIT_FSIZE, &mut lim);
        lim.rlim_cur = bytes as libc::rlim_t;
        libc::setrlimit(libc::RLIMIT_FSIZE, &lim);
    }
}

/// Declares, adds and confirms one family's unit; `Ok(false)` if refused by a rule.
async fn take(engine: &EmbeddedEngine, batch: &BatchId, i: u32) -> Result<bool, AllocError> {
    let family = FamilyId::new(format!("f{i}"));
    let unit = UnitId::new(format!("U{i}"));
    let steps = [
        Action::Declare {
            stage: Stage::Formal,
        },
        Action::Edit {
            list: ListKind::Intentions,
            edit: Edit::Add,
            unit: unit.clone(),
        },
        Action::Confirm { unit },
    ];
    for (n, action) in steps.into_iter().enumerate() {
        let answer = engine
            .act(batch, &family, &format!("{i}-{n}"), action)
            .await?;
        if answer.is_err() {
            return Ok(false);
        }
    }
    Ok(true)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or("usage: journal_crash <dir> <mode>")?);
    let mode = args.next().unwrap_or_else(|| "crash".to_owned());
    run(dir, &mode).await
}

/// The child's whole life in `mode` (`crash` or `full-disk`) on the journal in `dir`.
pub async fn run(dir: PathBuf, mode: &str) -> Result<(), Box<dyn Error>> {
    let clock = Arc::new(ManualClock::new(Millis(PRE)));
    let engine = Arc::new(EmbeddedEngine::open(&dir, clock.clone())?);
    let id = BatchId::new(BATCH);
    if !engine.batches().await?.contains(&id) {
        engine.load_batch(batch(&id)).await?;
    }
    clock.set(Millis(START));
    if mode == "full-disk" {
        let len = std::fs::metadata(dir.join(journal::file_name(&id)))?.len();
        cap_file_size(len + 4000);
    }
    say("ready");
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (engine, id) = (engine.clone(), id.clone());
        workers.push(tokio::spawn(async move {
            let mut i = w + 1;
            while i <= FAMILIES {
                match take(&engine, &id, i).await {
                    Ok(true) => say(&format!("ack f{i} U{i}")),
                    Ok(false) => say(&format!("refused f{i}")),
                    Err(AllocError::Journal(e)) => {
                        say(&format!("journal_error f{i} {e}"));
                        return;
                    }
                    Err(e) => {
                        say(&format!("error f{i} {e}"));
                        return;
                    }
                }
                i += WORKERS;
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    if mode == "full-disk" {
        // The batch stays refused once its journal failed.
        match take(&engine, &id, FAMILIES + 1).await {
            Err(AllocError::Journal(_)) => say("refused_after_failure"),
            other => say(&format!("accepted_after_failure {other:?}")),
        }
    }
    say("done");
    if mode == "crash" {
        // Wait to be killed, so the kill never races a clean exit.
        tokio::time::sleep(Duration::from_secs(600)).await;
    }
    Ok(())
}
