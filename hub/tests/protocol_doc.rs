//! Keeps `docs/protocol.md` in step with the code: the examples of every message (JSON
//! and MessagePack hex) and the error-code table are generated here and must appear
//! verbatim between the markers of the document.
//!
//! After changing the protocol, regenerate with:
//!
//! ```sh
//! UPDATE_PROTOCOL_DOC=1 cargo test -p xuanfang-hub --test protocol_doc
//! ```

mod common;

use std::fmt::Write as _;
use std::path::PathBuf;

use xuanfang_hub::protocol::{
    BoardChange, ClientMsg, Encoding, FamilyView, ServerMsg, SessionInfo, TakenUnit,
};
use xuanfang_hub::rules::{Phase, Stage};
use xuanfang_hub::selection::{Edit, How, ListKind, Outcome};
use xuanfang_hub::{
    BatchId, ErrorCode, FamilyId, Layout, Millis, Rejection, SessionId, SessionKind, UnitId,
};

use common::{client_variant, server_variant, ALL_CODES, CLIENT_VARIANTS, SERVER_VARIANTS};

const BEGIN: &str = "<!-- BEGIN GENERATED EXAMPLES -->";
const END: &str = "<!-- END GENERATED EXAMPLES -->";

/// 2025-06-07 09:00 Beijing time, the start of session S01.
const T0: i64 = 1_749_258_000_000;

fn doc_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/protocol.md")
}

fn session_info() -> SessionInfo {
    SessionInfo {
        id: SessionId::new("S01"),
        kind: SessionKind::Formal,
        start: Millis(T0),
        deadline: Millis(T0 + 180_000),
        families: 50,
        first_rank: 1,
        last_rank: 50,
        closed: false,
    }
}

fn taken() -> TakenUnit {
    TakenUnit {
        unit: UnitId::new("1-1203"),
        family_name: "张*丰".into(),
        rank: 3,
        how: How::Confirmed,
        at: Millis(T0 + 41_250),
    }
}

fn family_view() -> FamilyView {
    FamilyView {
        family: FamilyId::new("F0003"),
        name: "张*丰".into(),
        rank: 3,
        eligible_layouts: vec![Layout::new("一房一厅"), Layout::new("两房一厅")],
        session: session_info(),
        phase: Phase::Formal,
        preselect_start: Millis(T0 - 172_800_000),
        preselect_end: None,
        preselect_declared_at: Some(Millis(T0 - 90_000_000)),
        formal_declared_at: Some(Millis(T0 + 3_100)),
        cart: vec![UnitId::new("1-1203"), UnitId::new("2-0801")],
        intentions: vec![UnitId::new("1-1203"), UnitId::new("2-0801")],
        outcome: None,
        supplementary_window: Some((Millis(T0 + 180_000), Millis(T0 + 3_480_000))),
        applied_supplementary_at: None,
        server_time: Millis(T0 + 12_000),
        seq: 42,
    }
}

/// One example per message, with the heading it is shown under.
fn client_examples() -> Vec<ClientMsg> {
    vec![
        ClientMsg::Ping {
            t0: 1_749_258_011_987.5,
        },
        ClientMsg::Resume { epoch: 1, seq: 42 },
        ClientMsg::Declare {
            req_id: "r1".into(),
            stage: Stage::Formal,
        },
        ClientMsg::Edit {
            req_id: "r2".into(),
            list: ListKind::Cart,
            edit: Edit::Add,
            unit: UnitId::new("1-1203"),
        },
        ClientMsg::SetList {
            req_id: "r3".into(),
            list: ListKind::Intentions,
            units: vec![UnitId::new("2-0801"), UnitId::new("1-1203")],
        },
        ClientMsg::Sync {
            req_id: "r4".into(),
        },
        ClientMsg::Confirm {
            req_id: "r5".into(),
            unit: UnitId::new("1-1203"),
        },
        ClientMsg::Waive {
            req_id: "r6".into(),
        },
        ClientMsg::ApplySupplementary {
            req_id: "r7".into(),
        },
        ClientMsg::Refresh {
            req_id: "r8".into(),
            token: "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJGMDAwMyIsInJvbGUiOiJmYW1pbHkiLCJleHAiOjE3NDkyNjE2MDB9.sig".into(),
        },
    ]
}

fn server_examples() -> Vec<ServerMsg> {
    let mut done = family_view();
    done.phase = Phase::Done;
    done.outcome = Some(Outcome::Selected {
        unit: UnitId::new("1-1203"),
        how: How::Confirmed,
        at: Millis(T0 + 41_250),
    });
    vec![
        ServerMsg::Welcome {
            server_time: Millis(T0 + 12_000),
            batch: BatchId::new("2025-02"),
            epoch: 1,
            seq: 42,
            family: Some(FamilyId::new("F0003")),
        },
        ServerMsg::Pong {
            t0: 1_749_258_011_987.5,
            server_time: Millis(T0 + 12_031),
        },
        ServerMsg::Snapshot {
            epoch: 1,
            seq: 42,
            part: 0,
            parts: 1,
            taken: vec![taken()],
            sessions: vec![session_info()],
        },
        ServerMsg::Delta {
            epoch: 1,
            prev: 42,
            seq: 44,
            changes: vec![
                BoardChange::Taken(taken()),
                BoardChange::SessionClosed {
                    session: SessionId::new("S01"),
                },
            ],
        },
        ServerMsg::Family {
            family: family_view(),
        },
        ServerMsg::Ok {
            req_id: "r5".into(),
            family: Some(done),
        },
        ServerMsg::error(
            Some("r5".into()),
            Rejection::with_unit(ErrorCode::UnitTaken, UnitId::new("1-1203")),
        ),
        ServerMsg::TokenExpiring {
            expires: Millis(1_749_258_600_000),
        },
        ServerMsg::Refreshed {
            req_id: "r8".into(),
            expires: Millis(1_749_261_600_000),
        },
    ]
}

/// Extra examples worth showing: the other board changes.
fn extra_server_examples() -> Vec<(&'static str, ServerMsg)> {
    let mut added = session_info();
    added.id = SessionId::new("B01");
    added.kind = SessionKind::Supplementary;
    added.start = Millis(T0 + 7_200_000);
    added.deadline = Millis(T0 + 7_380_000);
    added.families = 2;
    added.first_rank = 7;
    added.last_rank = 19;
    vec![(
        "`delta` announcing a supplementary session",
        ServerMsg::Delta {
            epoch: 1,
            prev: 97,
            seq: 98,
            changes: vec![BoardChange::SessionAdded { session: added }],
        },
    )]
}

fn hex_block(bytes: &[u8]) -> String {
    // 32 bytes a line, so the hex stays readable and diffs stay small.
    bytes
        .chunks(32)
        .map(hex::encode)
        .collect::<Vec<_>>()
        .join("\n")
}

fn example<T: serde::Serialize>(out: &mut String, heading: &str, msg: &T) {
    let json = String::from_utf8(Encoding::Json.encode(msg).unwrap()).unwrap();
    let pack = Encoding::MsgPack.encode(msg).unwrap();
    writeln!(out, "#### {heading}\n").unwrap();
    writeln!(
        out,
        "JSON ({} bytes):\n\n```json\n{json}\n```\n",
        json.len()
    )
    .unwrap();
    writeln!(
        out,
        "MessagePack ({} bytes, hex):\n\n```text\n{}\n```\n",
        pack.len(),
        hex_block(&pack)
    )
    .unwrap();
}

/// The whole generated section, markers excluded.
fn generated() -> String {
    let mut out = String::new();
    out.push_str(
        "\n<!-- Generated by hub/tests/protocol_doc.rs; do not edit by hand. Regenerate with\n     UPDATE_PROTOCOL_DOC=1 cargo test -p xuanfang-hub --test protocol_doc -->\n\n",
    );
    out.push_str("### Client → server\n\n");
    for m in client_examples() {
        example(&mut out, &format!("`{}`", client_variant(&m)), &m);
    }
    out.push_str("### Server → client\n\n");
    for m in server_examples() {
        example(&mut out, &format!("`{}`", server_variant(&m)), &m);
    }
    for (heading, m) in extra_server_examples() {
        example(&mut out, heading, &m);
    }
    out.push_str("### Error codes\n\n");
    out.push_str("| code | 中文 | English |\n|---|---|---|\n");
    for c in ALL_CODES {
        let name = serde_json::to_value(c).unwrap();
        writeln!(
            out,
            "| `{}` | {} | {} |",
            name.as_str().unwrap(),
            c.zh(),
            c.en()
        )
        .unwrap();
    }
    out.push('\n');
    out
}

#[test]
fn examples_cover_every_message() {
    let c: std::collections::HashSet<_> = client_examples().iter().map(client_variant).collect();
    let s: std::collections::HashSet<_> = server_examples().iter().map(server_variant).collect();
    assert_eq!(c.len(), CLIENT_VARIANTS);
    assert_eq!(s.len(), SERVER_VARIANTS);
}

#[test]
fn examples_decode_back_to_themselves() {
    for enc in [Encoding::Json, Encoding::MsgPack] {
        for m in client_examples() {
            assert_eq!(enc.decode_client(&enc.encode(&m).unwrap()).unwrap(), m);
        }
        for m in server_examples() {
            assert_eq!(
                enc.decode::<ServerMsg>(&enc.encode(&m).unwrap()).unwrap(),
                m
            );
        }
    }
}

#[test]
fn protocol_doc_contains_the_generated_examples_verbatim() {
    let path = doc_path();
    let doc = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let (Some(b), Some(e)) = (doc.find(BEGIN), doc.find(END)) else {
        panic!("{} lacks the markers {BEGIN} / {END}", path.display());
    };
    assert!(b < e, "markers out of order");
    let current = &doc[b + BEGIN.len()..e];
    let want = generated();
    if current == want {
        return;
    }
    if std::env::var_os("UPDATE_PROTOCOL_DOC").is_some_and(|v| v == "1") {
        let updated = format!("{}{BEGIN}{want}{}", &doc[..b], &doc[e..]);
        std::fs::write(&path, updated).unwrap();
        eprintln!("rewrote the generated section of {}", path.display());
        return;
    }
    panic!(
        "docs/protocol.md is out of date with the protocol; regenerate with\n  \
         UPDATE_PROTOCOL_DOC=1 cargo test -p xuanfang-hub --test protocol_doc"
    );
}
