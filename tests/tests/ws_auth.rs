//! Every WebSocket action × every kind of caller: only a family's own socket acts, and a
//! refused action changes nothing. The actions come from one exhaustive match over the
//! protocol's client messages, so a new message cannot be missed.

use crate::common;

use std::time::Duration;

use common::*;
use xuanfang_hub::protocol::{ClientMsg, Encoding, ServerMsg};
use xuanfang_hub::{Edit, ErrorCode, ListKind, Stage, UnitId};

/// One message of every client kind, with whether only a family's socket may send it (an
/// action, or a refresh of the family's token).
fn every_client_message() -> Vec<(ClientMsg, bool)> {
    let u = || UnitId::from("U01");
    let r = || "r".to_owned();
    let all = vec![
        ClientMsg::Ping { t0: 1.0 },
        ClientMsg::Resume { epoch: 1, seq: 0 },
        ClientMsg::Declare {
            req_id: r(),
            stage: Stage::Preselection,
        },
        ClientMsg::Edit {
            req_id: r(),
            list: ListKind::Cart,
            edit: Edit::Add,
            unit: u(),
        },
        ClientMsg::SetList {
            req_id: r(),
            list: ListKind::Cart,
            units: vec![u()],
        },
        ClientMsg::Sync { req_id: r() },
        ClientMsg::Confirm {
            req_id: r(),
            unit: u(),
        },
        ClientMsg::Waive { req_id: r() },
        ClientMsg::ApplySupplementary { req_id: r() },
        // A family's token for its own socket: watchers have none to refresh.
        ClientMsg::Refresh {
            req_id: r(),
            token: family_token("F1"),
        },
    ];
    all.into_iter()
        .map(|m| {
            // Exhaustive: a new variant does not compile until it is listed above.
            let acts = match &m {
                ClientMsg::Ping { .. } | ClientMsg::Resume { .. } => false,
                ClientMsg::Declare { .. }
                | ClientMsg::Edit { .. }
                | ClientMsg::SetList { .. }
                | ClientMsg::Sync { .. }
                | ClientMsg::Confirm { .. }
                | ClientMsg::Waive { .. }
                | ClientMsg::ApplySupplementary { .. }
                | ClientMsg::Refresh { .. } => true,
            };
            (m, acts)
        })
        .collect()
}

fn with_req_id(m: &ClientMsg, id: &str) -> ClientMsg {
    let mut m = m.clone();
    match &mut m {
        ClientMsg::Declare { req_id, .. }
        | ClientMsg::Edit { req_id, .. }
        | ClientMsg::SetList { req_id, .. }
        | ClientMsg::Sync { req_id }
        | ClientMsg::Confirm { req_id, .. }
        | ClientMsg::Waive { req_id }
        | ClientMsg::ApplySupplementary { req_id }
        | ClientMsg::Refresh { req_id, .. } => *req_id = id.to_owned(),
        ClientMsg::Ping { .. } | ClientMsg::Resume { .. } => {}
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_familys_own_socket_acts_and_refused_actions_change_nothing() {
    let alloc = redis_engine(&namespace()).await;
    let batch = small_batch("wsauth", Duration::from_secs(600), Duration::from_secs(60));
    alloc.load_batch(batch.clone()).await.unwrap();
    let gw = start_gateway(alloc.clone(), &batch.id).await;
    let seq_before = alloc.board(&batch.id).await.unwrap().seq;
    let messages = every_client_message();
    assert_eq!(messages.len(), 10);

    // Tokens that never get a socket: refused at the upgrade, before any frame.
    for bad in [
        expired_token("F1"),
        family_token("F999"),
        "not.a.jwt".to_owned(),
    ] {
        let refused = try_connect(gw.addr, Some(&bad), Encoding::Json).await;
        assert!(
            matches!(&refused, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 401 || r.status() == 403),
            "{bad}: {:?}",
            refused.err()
        );
    }

    // Sockets that may watch but not act: anonymous, and an operator's token (a valid
    // token of the wrong role: forbidden, as over HTTP).
    for (token, refused) in [
        (None, ErrorCode::Unauthorized),
        (Some(operator_token()), ErrorCode::Forbidden),
    ] {
        let mut c = connect(gw.addr, token.as_deref(), Encoding::Json).await;
        for (i, (m, acts)) in messages.iter().enumerate() {
            if !acts {
                continue;
            }
            let id = format!("x{i}");
            c.send(&with_req_id(m, &id)).await;
            let code = c
                .until(Duration::from_secs(10), |r| match r {
                    ServerMsg::Error {
                        req_id: Some(r),
                        code,
                        ..
                    } if *r == id => Some(*code),
                    ServerMsg::Ok { req_id, .. } if *req_id == id => Some(ErrorCode::Internal),
                    _ => None,
                })
                .await
                .expect("an answer");
            assert_eq!(code, refused, "{m:?} as {token:?}");
        }
    }
    // Nothing reached the log.
    assert_eq!(alloc.board(&batch.id).await.unwrap().seq, seq_before);

    // A family's own socket acts for itself only: F1's declaration is F1's.
    let mut f1 = connect(gw.addr, Some(&family_token("F1")), Encoding::Json).await;
    let r = f1
        .request(|req_id| ClientMsg::Declare {
            req_id,
            stage: Stage::Preselection,
        })
        .await;
    assert!(is_ok(&r), "{r:?}");
    let f2 = alloc.family(&batch.id, &"F2".into()).await.unwrap();
    assert!(
        f2.preselect_declared_at.is_none(),
        "F1's socket acted for F1 only"
    );
}
