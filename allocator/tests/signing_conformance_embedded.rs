//! The signing conformance suite against the embedded engine (in memory, and
//! journaling to disk), plus what only a journal has: a restart replays the signing
//! log, a torn tail is cut, and the file holds no card number or phone in clear.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use xuanfang_allocator::embedded::signing::signing_file_name;
use xuanfang_allocator::embedded::{EmbeddedEngine, JournalOptions};
use xuanfang_allocator::testing::test_signing_options;
use xuanfang_allocator::{AllocError, Allocator, SigningStore};
use xuanfang_hub::ManualClock;

async fn in_memory_engine(clock: Arc<ManualClock>) -> (Arc<dyn Allocator>, Arc<dyn SigningStore>) {
    let e = Arc::new(EmbeddedEngine::in_memory(clock).with_signing(&test_signing_options()));
    (e.clone(), e)
}

fn temp_dir() -> PathBuf {
    // Under the target dir: a real disk (fsync is real), and left for inspection.
    tempfile::Builder::new()
        .prefix("signing-journal-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir")
        .keep()
}

fn open(dir: &Path, clock: Arc<ManualClock>) -> Arc<EmbeddedEngine> {
    Arc::new(
        EmbeddedEngine::open_full(
            dir,
            clock,
            JournalOptions::default(),
            Some(&test_signing_options()),
        )
        .expect("open journal dir"),
    )
}

async fn journaled_engine(clock: Arc<ManualClock>) -> (Arc<dyn Allocator>, Arc<dyn SigningStore>) {
    let e = open(&temp_dir(), clock);
    (e.clone(), e)
}

mod in_memory {
    signing_conformance_suite!(super::in_memory_engine);
}

mod journaled {
    signing_conformance_suite!(super::journaled_engine);
}

mod journal_only {
    use super::*;
    use crate::signing_suite::*;
    use xuanfang_hub::signing::Status;
    use xuanfang_hub::{SigningAction, SigningBook};

    /// A journaled engine with a batch where f1 is in review, f2 approved, f3 opened.
    async fn world(dir: &Path) -> Ctx {
        let clock = Arc::new(ManualClock::new(START));
        let e = open(dir, clock.clone());
        let c = Ctx::load(e.clone(), e, clock, "journal").await;
        c.in_review("f1", "A101").await;
        c.in_review("f2", "A102").await;
        c.act("f2", &op(), SigningAction::Approve).await.unwrap();
        c.opened("f3", "A103").await;
        c.act_req("f3", &fam("f3"), "fill-3", fill()).await.unwrap();
        c
    }

    /// The same batch in a new engine on the same directory.
    async fn reopen(c: Ctx, dir: &Path) -> Ctx {
        let batch = c.batch.clone();
        let clock = c.clock.clone();
        drop(c);
        // The writer threads end once the engine is dropped; the lock file is released
        // with it.
        let e = loop {
            match EmbeddedEngine::open_full(
                dir,
                clock.clone(),
                JournalOptions::default(),
                Some(&test_signing_options()),
            ) {
                Ok(e) => break Arc::new(e),
                Err(AllocError::Locked { .. }) => tokio::task::yield_now().await,
                Err(e) => panic!("reopen: {e}"),
            }
        };
        Ctx::attach(e.clone(), e, clock, &batch)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restart_replays_the_signing_log_and_remembers_replies() {
        let dir = temp_dir();
        let c = world(&dir).await;
        let log = c.log().await;
        let records: Vec<_> = [
            c.record("f1").await,
            c.record("f2").await,
            c.record("f3").await,
        ]
        .into();
        let c = reopen(c, &dir).await;
        assert_eq!(c.log().await, log);
        let again: Vec<_> = [
            c.record("f1").await,
            c.record("f2").await,
            c.record("f3").await,
        ]
        .into();
        assert_eq!(again, records);
        assert_eq!(
            SigningBook::replay(&log).unwrap().record(&f("f1")),
            again[0].as_ref()
        );
        // An ok's req_id answers ok again after the restart, changing nothing.
        c.act_req("f3", &fam("f3"), "fill-3", start_face("z"))
            .await
            .unwrap();
        assert_eq!(c.log().await.len(), log.len());
        // The provider indexes are rebuilt: a late repeat of a payment is known.
        let (who, v) = c.callback(&PAY, paid("D-f1", "T-f1")).await.unwrap();
        assert_eq!((who, v.status), (f("f1"), Status::InReview));
        // And the log goes on where it was.
        c.act("f1", &op(), SigningAction::Approve).await.unwrap();
        assert_eq!(c.log().await.last().unwrap().seq, log.len() as u64 + 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_torn_tail_of_the_signing_journal_is_cut() {
        let dir = temp_dir();
        let c = world(&dir).await;
        let log = c.log().await;
        let path = dir.join(signing_file_name(&c.batch));
        let len = std::fs::metadata(&path).unwrap().len();
        drop(c);
        // A frame header promising more than is there: a write cut by a crash.
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 9, 9]).unwrap();
        drop(file);
        let clock = Arc::new(ManualClock::new(START));
        let e = open(&dir, clock.clone());
        let ids = e.batches().await.unwrap();
        let c = Ctx::attach(e.clone(), e, clock, &ids[0]);
        assert_eq!(c.log().await, log);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            len,
            "the tail was cut"
        );
        c.act("f1", &op(), SigningAction::Approve).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_journal_holds_no_card_number_or_phone_in_clear() {
        let dir = temp_dir();
        let c = world(&dir).await;
        let card = card();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let has = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
            assert!(!has(&card), "{} holds the card number", path.display());
            assert!(!has(PHONE), "{} holds the phone", path.display());
        }
        // But the engine reads them back.
        let rec = c.record("f3").await.unwrap();
        assert_eq!(rec.details().latest().unwrap().card_number.as_str(), card);
        assert!(dir.join(signing_file_name(&c.batch)).exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn another_data_key_cannot_open_the_signing_journal() {
        let dir = temp_dir();
        let c = world(&dir).await;
        drop(c);
        let wrong = xuanfang_allocator::SigningOptions::new([7; 32]);
        let clock = Arc::new(ManualClock::new(START));
        let opened = loop {
            match EmbeddedEngine::open_full(
                &dir,
                clock.clone(),
                JournalOptions::default(),
                Some(&wrong),
            ) {
                Err(AllocError::Locked { .. }) => tokio::task::yield_now().await,
                other => break other,
            }
        };
        assert!(matches!(opened, Err(AllocError::Corrupt(_))));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_engine_without_a_data_key_stores_no_signing() {
        let clock = Arc::new(ManualClock::new(START));
        let e = Arc::new(EmbeddedEngine::in_memory(clock.clone()));
        let c = Ctx::load(e.clone(), e, clock, "nokey").await;
        c.select("f1", "A101").await;
        let r = c
            .store
            .open_signing(&c.batch, &f("f1"), "张三", DEPOSIT)
            .await;
        assert!(matches!(r, Err(AllocError::SigningDisabled)));
    }

    /// A failed fsync of the signing journal: the change is answered with a journal
    /// error, shows nowhere, and the batch's signing refuses further changes until a
    /// restart replays the file (after a failed fsync the page cache cannot be trusted).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_sync_refuses_the_change_and_every_later_one() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = temp_dir();
        let failing = Arc::new(AtomicBool::new(false));
        let options = JournalOptions {
            sync: Arc::new({
                let failing = failing.clone();
                move |file: &std::fs::File| {
                    if failing.load(Ordering::SeqCst) {
                        return Err(std::io::Error::other("injected: disk gone"));
                    }
                    file.sync_data()
                }
            }),
        };
        let clock = Arc::new(ManualClock::new(START));
        let e = Arc::new(
            EmbeddedEngine::open_full(&dir, clock.clone(), options, Some(&test_signing_options()))
                .unwrap(),
        );
        let c = Ctx::load(e.clone(), e, clock, "failing").await;
        c.opened("f1", "A101").await;
        let before = (c.log().await, c.record("f1").await);
        failing.store(true, Ordering::SeqCst);
        let r = c
            .store
            .sign(&c.batch, &f("f1"), &fam("f1"), "x", fill())
            .await;
        assert!(matches!(r, Err(AllocError::Journal(_))), "{r:?}");
        assert_eq!((c.log().await, c.record("f1").await), before);
        failing.store(false, Ordering::SeqCst);
        let r = c
            .store
            .sign(&c.batch, &f("f1"), &fam("f1"), "y", fill())
            .await;
        assert!(
            matches!(r, Err(AllocError::Journal(_))),
            "still refused: {r:?}"
        );
    }
}
