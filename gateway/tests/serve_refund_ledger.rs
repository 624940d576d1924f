//! `xuanfang serve --redis` keeps the refunds in Redis, one ledger for every gateway, as
//! real processes: a gateway started with `[payment] refund_journal` (its own file, from
//! before the ledger) takes that file's refunds into the ledger, says so and leaves the
//! file alone; another gateway on the same Redis lists them.

use crate::common;

use std::ffi::OsString;

use common::*;

const BATCH: &str = "refund-ledger";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_former_refund_journal_is_taken_into_the_redis_ledger_every_gateway_lists() {
    let tmp = tempfile::tempdir().unwrap();
    let redis_dir = tmp.path().join("redis");
    std::fs::create_dir_all(&redis_dir).unwrap();
    let redis = Redis::start(&redis_dir);
    let key = tmp.path().join("data.key");
    std::fs::write(&key, hex::encode([0x5a; 32])).unwrap();
    let blobs = tmp.path().join("blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    // A gateway's own journal: one refund WeChat accepted, one it has not answered.
    let journal = tmp.path().join("refunds-a.jsonl");
    let line = |no: &str, status: &str| {
        format!(
            r#"{{"batch":"{BATCH}","out_refund_no":"{no}","out_trade_no":"D-{no}","provider_txn_id":"t-{no}","amount_fen":500,"reason":"租赁保证金退款 deposit refund: order_expired","status":"{status}","at":1}}"#
        )
    };
    let text = format!("{}\n{}\n", line("RF1", "accepted"), line("RF2", "asked"));
    std::fs::write(&journal, &text).unwrap();
    // No sweep: the sandbox knows neither refund and would settle them.
    let config = |with_journal: bool| {
        let path = tmp.path().join(format!("xuanfang-{with_journal}.toml"));
        let mut c = String::from("[payment]\nvendor = \"sandbox\"\nreconcile_secs = 0\n");
        if with_journal {
            c.push_str(&format!(
                "refund_journal = {:?}\n",
                journal.display().to_string()
            ));
        }
        std::fs::write(&path, c).unwrap();
        path
    };
    let engine = |with_journal: bool| -> Vec<OsString> {
        vec![
            "--redis".into(),
            redis.url().into(),
            "--data-key-file".into(),
            key.clone().into(),
            "--blob-dir".into(),
            blobs.clone().into(),
            "--config".into(),
            config(with_journal).into(),
        ]
    };
    let a = Serve::start(&engine(true), tmp.path()).await;
    let b = Serve::start(&engine(false), tmp.path()).await;
    assert!(
        a.log_text()
            .contains("refund_journal is not used with --redis"),
        "{}",
        a.log_text()
    );

    let start = server_time(&a.base).await + 3_600_000;
    upload(&a.base, BATCH, 2, 2, start, 600).await;
    until_served(&b.base, BATCH).await;
    let (st, listed) = get(
        format!("{}/api/ops/refunds?batch={BATCH}", b.base),
        Some(&op_token()),
    )
    .await;
    assert_eq!(st, 200, "{listed}");
    let mut got: Vec<(String, String)> = (listed.as_array().unwrap().iter())
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().to_owned();
            (s("out_refund_no"), s("status"))
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("RF1".to_owned(), "accepted".to_owned()),
            ("RF2".to_owned(), "asked".to_owned())
        ]
    );
    assert_eq!(std::fs::read_to_string(&journal).unwrap(), text);
    drop((a, b, redis));
}
