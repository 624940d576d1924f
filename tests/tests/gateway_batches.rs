//! Many batches at once: loading a batch closes nothing, a family of an older batch keeps
//! its result, and a person who is a family in two batches sees both.

use crate::common;

use std::time::Duration;

use common::*;
use xuanfang_hub::protocol::{BoardChange, ClientMsg, Encoding, ServerMsg};
use xuanfang_hub::{Batch, BatchId, FamilyId, UnitId};

const T: Duration = Duration::from_secs(30);

/// `small_batch` with its families renamed `G<i>`, except those listed (kept as `F<i>`).
fn with_other_families(mut b: Batch, keep: &[&str]) -> Batch {
    let rename = |f: &FamilyId| {
        if keep.contains(&f.as_str()) {
            f.clone()
        } else {
            FamilyId(f.as_str().replacen('F', "G", 1))
        }
    };
    for f in &mut b.families {
        f.id = rename(&f.id);
    }
    for s in &mut b.sessions {
        s.families = s.families.iter().map(rename).collect();
    }
    b
}

async fn welcome_batch(c: &mut Client) -> BatchId {
    c.until(T, |m| match m {
        ServerMsg::Welcome { batch, .. } => Some(batch.clone()),
        _ => None,
    })
    .await
    .expect("welcome")
}

async fn get_json(url: String, token: Option<&str>) -> (u16, serde_json::Value) {
    let mut r = reqwest::Client::new().get(url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_batch_stays_served_while_a_newer_one_runs_live() {
    let (ns, clock) = (namespace(), manual_clock());
    let alloc = clocked_redis_engine(&ns, &clock).await;
    // Batch ids hold letters, digits, '-', '_' and '.'; the namespace keeps runs apart.
    let ns: String = ns.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let a = small_batch(
        &format!("A-{ns}"),
        Duration::from_millis(600),
        Duration::from_secs(60),
    );
    alloc.load_batch(a.clone()).await.unwrap();
    let gw = clocked_gateway(alloc.clone(), &clock, &a.id).await;
    let base = format!("http://{}", gw.addr);

    // Batch A selects: F1 confirms U01; A's hall screen watches.
    let mut hall_a = connect(gw.addr, None, Encoding::Json).await;
    assert_eq!(welcome_batch(&mut hall_a).await, a.id);
    preselect_direct(alloc.as_ref(), &a.id, "F1", &["U01"]).await;
    preselect_direct(alloc.as_ref(), &a.id, "F2", &["U02"]).await;
    clock.set(a.sessions[0].start);
    confirm_direct(alloc.as_ref(), &a.id, "F1", "U01").await;

    // Batch B is loaded (its families are G*, except F6, a family in both).
    let b = with_other_families(
        small_batch(
            &format!("B-{ns}"),
            Duration::from_secs(600),
            Duration::from_secs(60),
        ),
        &["F6"],
    );
    alloc.load_batch(b.clone()).await.unwrap();
    gw.app.refresh_batches().await.unwrap();

    // A's hall socket stayed open through B's load and still follows A live.
    confirm_direct(alloc.as_ref(), &a.id, "F2", "U02").await;
    let saw = hall_a
        .until(T, |m| match m {
            ServerMsg::Delta { changes, .. } => changes
                .iter()
                .any(|c| matches!(c, BoardChange::Taken(t) if t.unit == UnitId::from("U02")))
                .then_some(()),
            _ => None,
        })
        .await;
    assert!(
        saw.is_some(),
        "A's screen got A's confirm after B was loaded"
    );

    // A screen naming no batch shows the live one, B; naming A shows A.
    let mut hall_b = connect(gw.addr, None, Encoding::Json).await;
    assert_eq!(welcome_batch(&mut hall_b).await, b.id);
    let mut named = connect_path(&format!("{}/ws?batch={}", gw.addr, a.id), Encoding::Json).await;
    assert_eq!(welcome_batch(&mut named).await, a.id);

    // F1, a family of A only, logs in and sees its result.
    let mut f1 = connect(gw.addr, Some(&family_token("F1")), Encoding::Json).await;
    assert_eq!(welcome_batch(&mut f1).await, a.id);
    let view = f1
        .until(T, |m| match m {
            ServerMsg::Family { family } => Some(family.clone()),
            _ => None,
        })
        .await
        .expect("family view");
    assert_eq!(
        view.outcome.as_ref().and_then(|o| o.unit()),
        Some(&UnitId::from("U01"))
    );
    let (status, me) = get_json(format!("{base}/api/me"), Some(&family_token("F1"))).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["outcome"]["unit"], "U01");
    // ... and its history is still there for operators.
    let (status, events) = get_json(
        format!("{base}/api/ops/events?batch={}", a.id),
        Some(&operator_token()),
    )
    .await;
    assert_eq!(status, 200);
    assert!(events
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["event"]["kind"] == "selected" && e["event"]["family"] == "F1"));

    // F1 is no family of B.
    let (status, _) = get_json(
        format!("{base}/api/me?batch={}", b.id),
        Some(&family_token("F1")),
    )
    .await;
    assert_eq!(status, 403);

    // F6 is a family of both: its home page lists both, newest first.
    let (status, mine) =
        get_json(format!("{base}/api/me/batches"), Some(&family_token("F6"))).await;
    assert_eq!(status, 200, "{mine}");
    let ids: Vec<&str> = mine
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["batch"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [b.id.as_str(), a.id.as_str()]);
    let mut f6 = connect_path(
        &format!("{}/ws?batch={}&token={}", gw.addr, a.id, family_token("F6")),
        Encoding::Json,
    )
    .await;
    assert_eq!(welcome_batch(&mut f6).await, a.id);

    // An unknown batch is a clear 404, not the live one.
    let (status, body) = get_json(format!("{base}/api/catalog?batch=nope"), None).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["code"], "unknown_batch");

    // Still open at the end: A's screen answers a ping.
    hall_a.send(&ClientMsg::Ping { t0: 1.0 }).await;
    let pong = hall_a
        .until(T, |m| matches!(m, ServerMsg::Pong { .. }).then_some(()))
        .await;
    assert!(pong.is_some());
}
