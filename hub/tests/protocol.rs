//! Every protocol message round-trips in both encodings, and no input, however
//! hostile, makes decoding panic.

mod common;

use proptest::collection::vec;
use proptest::prelude::*;
use xuanfang_hub::protocol::{
    BoardChange, ClientMsg, DecodeError, Encoding, FamilyView, ServerMsg, SessionInfo, TakenUnit,
    Text, MAX_CLIENT_FRAME, MAX_REQ_ID,
};
use xuanfang_hub::rules::{Phase, Stage};
use xuanfang_hub::selection::{Edit, How, ListKind, NoUnitReason, Outcome};
use xuanfang_hub::{BatchId, ErrorCode, FamilyId, Layout, Millis, SessionId, SessionKind, UnitId};

use common::{
    client_variant, code_index, server_variant, ALL_CODES, CLIENT_VARIANTS, SERVER_VARIANTS,
};

const ENCODINGS: [Encoding; 2] = [Encoding::Json, Encoding::MsgPack];

// ---------------------------------------------------------------------------
// Strategies

/// Any text, including CJK, emoji, quotes and control characters.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        vec(any::<char>(), 0..10).prop_map(String::from_iter),
        "[A-Z]-[0-9]{3,4}",
        "[张王李赵]\\*[明华]",
    ]
}

fn finite_f64() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("finite", |x| x.is_finite())
}

fn millis() -> impl Strategy<Value = Millis> {
    any::<i64>().prop_map(Millis)
}

fn unit_id() -> impl Strategy<Value = UnitId> {
    text().prop_map(UnitId)
}
fn family_id() -> impl Strategy<Value = FamilyId> {
    text().prop_map(FamilyId)
}
fn session_id() -> impl Strategy<Value = SessionId> {
    text().prop_map(SessionId)
}
fn batch_id() -> impl Strategy<Value = BatchId> {
    text().prop_map(BatchId)
}
fn layout() -> impl Strategy<Value = Layout> {
    text().prop_map(Layout)
}

fn stage() -> impl Strategy<Value = Stage> {
    prop_oneof![Just(Stage::Preselection), Just(Stage::Formal)]
}
fn list_kind() -> impl Strategy<Value = ListKind> {
    prop_oneof![Just(ListKind::Cart), Just(ListKind::Intentions)]
}
fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        Just(Edit::Add),
        Just(Edit::Remove),
        Just(Edit::Up),
        Just(Edit::Down),
        Just(Edit::Top)
    ]
}
fn phase() -> impl Strategy<Value = Phase> {
    prop_oneof![
        Just(Phase::BeforePreselection),
        Just(Phase::Preselection),
        Just(Phase::Waiting),
        Just(Phase::Formal),
        Just(Phase::Done)
    ]
}
fn how() -> impl Strategy<Value = How> {
    prop_oneof![Just(How::Confirmed), Just(How::Automatic)]
}
fn session_kind() -> impl Strategy<Value = SessionKind> {
    prop_oneof![Just(SessionKind::Formal), Just(SessionKind::Supplementary)]
}
fn error_code() -> impl Strategy<Value = ErrorCode> {
    (0..ALL_CODES.len()).prop_map(|i| ALL_CODES[i])
}
fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        (unit_id(), how(), millis()).prop_map(|(unit, how, at)| Outcome::Selected {
            unit,
            how,
            at
        }),
        (
            prop_oneof![
                Just(NoUnitReason::Absent),
                Just(NoUnitReason::NoIntentions),
                Just(NoUnitReason::NoFreeIntention)
            ],
            millis()
        )
            .prop_map(|(reason, at)| Outcome::NoUnit { reason, at }),
        millis().prop_map(|at| Outcome::Waived { at }),
    ]
}
fn message_text() -> impl Strategy<Value = Text> {
    (text(), text()).prop_map(|(zh, en)| Text { zh, en })
}
fn taken_unit() -> impl Strategy<Value = TakenUnit> {
    (unit_id(), text(), any::<u32>(), how(), millis()).prop_map(
        |(unit, family_name, rank, how, at)| TakenUnit {
            unit,
            family_name,
            rank,
            how,
            at,
        },
    )
}
fn session_info() -> impl Strategy<Value = SessionInfo> {
    (
        session_id(),
        session_kind(),
        millis(),
        millis(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<bool>(),
    )
        .prop_map(
            |(id, kind, start, deadline, families, first_rank, last_rank, closed)| SessionInfo {
                id,
                kind,
                start,
                deadline,
                families,
                first_rank,
                last_rank,
                closed,
            },
        )
}
fn board_change() -> impl Strategy<Value = BoardChange> {
    prop_oneof![
        taken_unit().prop_map(BoardChange::Taken),
        session_id().prop_map(|session| BoardChange::SessionClosed { session }),
        session_info().prop_map(|session| BoardChange::SessionAdded { session }),
    ]
}
fn family_view() -> impl Strategy<Value = FamilyView> {
    let who = (
        family_id(),
        text(),
        any::<u32>(),
        vec(layout(), 0..4),
        session_info(),
        phase(),
    );
    let times = (
        millis(),
        proptest::option::of(millis()),
        proptest::option::of(millis()),
        proptest::option::of(millis()),
        any::<u64>(),
    );
    let lists = (
        vec(unit_id(), 0..6),
        vec(unit_id(), 0..6),
        proptest::option::of(outcome()),
        proptest::option::of((millis(), millis())),
        proptest::option::of(millis()),
        millis(),
    );
    (who, times, lists).prop_map(
        |(
            (family, name, rank, eligible_layouts, session, phase),
            (preselect_start, preselect_end, preselect_declared_at, formal_declared_at, seq),
            (
                cart,
                intentions,
                outcome,
                supplementary_window,
                applied_supplementary_at,
                server_time,
            ),
        )| FamilyView {
            family,
            name,
            rank,
            eligible_layouts,
            session,
            phase,
            preselect_start,
            preselect_end,
            preselect_declared_at,
            formal_declared_at,
            cart,
            intentions,
            outcome,
            supplementary_window,
            applied_supplementary_at,
            server_time,
            seq,
        },
    )
}

fn req_id() -> impl Strategy<Value = String> {
    text()
}

fn client_msg() -> impl Strategy<Value = ClientMsg> {
    prop_oneof![
        finite_f64().prop_map(|t0| ClientMsg::Ping { t0 }),
        (any::<u64>(), any::<u64>()).prop_map(|(epoch, seq)| ClientMsg::Resume { epoch, seq }),
        (req_id(), stage()).prop_map(|(req_id, stage)| ClientMsg::Declare { req_id, stage }),
        (req_id(), list_kind(), edit(), unit_id()).prop_map(|(req_id, list, edit, unit)| {
            ClientMsg::Edit {
                req_id,
                list,
                edit,
                unit,
            }
        }),
        (req_id(), list_kind(), vec(unit_id(), 0..6)).prop_map(|(req_id, list, units)| {
            ClientMsg::SetList {
                req_id,
                list,
                units,
            }
        }),
        req_id().prop_map(|req_id| ClientMsg::Sync { req_id }),
        (req_id(), unit_id()).prop_map(|(req_id, unit)| ClientMsg::Confirm { req_id, unit }),
        req_id().prop_map(|req_id| ClientMsg::Waive { req_id }),
        req_id().prop_map(|req_id| ClientMsg::ApplySupplementary { req_id }),
        (req_id(), "[A-Za-z0-9._-]{0,200}")
            .prop_map(|(req_id, token)| ClientMsg::Refresh { req_id, token }),
    ]
}

fn server_msg() -> impl Strategy<Value = ServerMsg> {
    prop_oneof![
        (
            millis(),
            batch_id(),
            any::<u64>(),
            any::<u64>(),
            proptest::option::of(family_id())
        )
            .prop_map(
                |(server_time, batch, epoch, seq, family)| ServerMsg::Welcome {
                    server_time,
                    batch,
                    epoch,
                    seq,
                    family
                }
            ),
        (finite_f64(), millis()).prop_map(|(t0, server_time)| ServerMsg::Pong { t0, server_time }),
        (
            any::<u64>(),
            any::<u64>(),
            (any::<u32>(), any::<u32>()),
            vec(taken_unit(), 0..4),
            vec(session_info(), 0..3)
        )
            .prop_map(
                |(epoch, seq, (part, parts), taken, sessions)| ServerMsg::Snapshot {
                    epoch,
                    seq,
                    part,
                    parts,
                    taken,
                    sessions
                }
            ),
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            vec(board_change(), 0..4)
        )
            .prop_map(|(epoch, prev, seq, changes)| ServerMsg::Delta {
                epoch,
                prev,
                seq,
                changes
            }),
        family_view().prop_map(|family| ServerMsg::Family { family }),
        (req_id(), proptest::option::of(family_view()))
            .prop_map(|(req_id, family)| ServerMsg::Ok { req_id, family }),
        (
            proptest::option::of(req_id()),
            error_code(),
            proptest::option::of(unit_id()),
            message_text()
        )
            .prop_map(|(req_id, code, unit, message)| ServerMsg::Error {
                req_id,
                code,
                unit,
                message
            }),
        millis().prop_map(|expires| ServerMsg::TokenExpiring { expires }),
        (req_id(), millis()).prop_map(|(req_id, expires)| ServerMsg::Refreshed { req_id, expires }),
    ]
}

// ---------------------------------------------------------------------------
// Round trips

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_client_message_round_trips_in_both_encodings(msg in client_msg()) {
        for enc in ENCODINGS {
            let bytes = enc.encode(&msg).unwrap();
            let back = enc.decode_client(&bytes).unwrap();
            prop_assert_eq!(&back, &msg, "{:?}", enc);
        }
    }

    #[test]
    fn every_server_message_round_trips_in_both_encodings(msg in server_msg()) {
        for enc in ENCODINGS {
            let bytes = enc.encode(&msg).unwrap();
            let back: ServerMsg = enc.decode(&bytes).unwrap();
            prop_assert_eq!(&back, &msg, "{:?}", enc);
        }
    }

    #[test]
    fn json_frames_carry_the_type_tag_as_snake_case(msg in client_msg()) {
        let v: serde_json::Value = serde_json::from_slice(&Encoding::Json.encode(&msg).unwrap()).unwrap();
        prop_assert_eq!(v["type"].as_str(), Some(client_variant(&msg)));
    }

    #[test]
    fn random_bytes_never_panic_and_rarely_decode(bytes in vec(any::<u8>(), 0..256)) {
        for enc in ENCODINGS {
            // Either outcome is fine; panicking is not. A rare accidental valid frame
            // must still be a real message, so re-encoding it must work.
            if let Ok(m) = enc.decode_client(&bytes) {
                enc.encode(&m).unwrap();
            }
            let _ = enc.decode::<ServerMsg>(&bytes);
        }
    }

    #[test]
    fn truncated_client_frames_are_decode_errors(msg in client_msg(), cut in any::<prop::sample::Index>()) {
        for enc in ENCODINGS {
            let bytes = enc.encode(&msg).unwrap();
            let n = cut.index(bytes.len());
            let err = enc.decode_client(&bytes[..n]);
            prop_assert!(err.is_err(), "{:?} prefix of {} bytes decoded: {:?}", enc, n, err);
            prop_assert_eq!(err.unwrap_err().code(), ErrorCode::BadFrame);
        }
    }

    #[test]
    fn truncated_server_frames_are_decode_errors(msg in server_msg(), cut in any::<prop::sample::Index>()) {
        for enc in ENCODINGS {
            let bytes = enc.encode(&msg).unwrap();
            let n = cut.index(bytes.len());
            prop_assert!(enc.decode::<ServerMsg>(&bytes[..n]).is_err());
        }
    }

    #[test]
    fn corrupted_frames_never_panic(msg in client_msg(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        for enc in ENCODINGS {
            let mut bytes = enc.encode(&msg).unwrap();
            let i = at.index(bytes.len());
            bytes[i] = byte;
            let _ = enc.decode_client(&bytes);
        }
    }
}

#[test]
fn strategies_cover_every_variant() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use std::collections::HashSet;
    let mut runner = TestRunner::deterministic();
    let (mut c, mut s) = (HashSet::new(), HashSet::new());
    for _ in 0..2000 {
        c.insert(client_variant(
            &client_msg().new_tree(&mut runner).unwrap().current(),
        ));
        s.insert(server_variant(
            &server_msg().new_tree(&mut runner).unwrap().current(),
        ));
    }
    assert_eq!(c.len(), CLIENT_VARIANTS, "{c:?}");
    assert_eq!(s.len(), SERVER_VARIANTS, "{s:?}");
}

#[test]
fn all_codes_lists_every_code_once() {
    for (i, c) in ALL_CODES.iter().enumerate() {
        assert_eq!(code_index(*c), i, "{c:?}");
    }
}

#[test]
fn every_error_code_round_trips_as_its_snake_case_name() {
    for c in ALL_CODES {
        let json = serde_json::to_string(&c).unwrap();
        assert!(
            json.chars()
                .all(|ch| ch == '"' || ch == '_' || ch.is_ascii_lowercase()),
            "{json}"
        );
        for enc in ENCODINGS {
            let back: ErrorCode = enc.decode(&enc.encode(&c).unwrap()).unwrap();
            assert_eq!(back, c);
        }
        assert!(!c.zh().is_empty() && !c.en().is_empty());
    }
}

// ---------------------------------------------------------------------------
// Hostile input

#[test]
fn req_ids_are_1_to_64_bytes_without_control_characters() {
    use xuanfang_hub::protocol::req_id_ok;
    assert_eq!(MAX_REQ_ID, 64);
    for ok in [
        "1",
        "r-0001",
        "确认-1",
        "550e8400-e29b-41d4-a716-446655440000",
        "a b",
    ] {
        assert!(req_id_ok(ok), "{ok:?}");
    }
    assert!(req_id_ok(&"x".repeat(64)));
    assert!(req_id_ok(&"确".repeat(21)));
    for bad in ["", "a\nb", "a\r", "\t", "\u{0}", "x\u{7f}", "x\u{85}"] {
        assert!(!req_id_ok(bad), "{bad:?}");
    }
    assert!(!req_id_ok(&"x".repeat(65)));
    assert!(!req_id_ok(&"确".repeat(22)));
}

#[test]
fn oversized_frames_are_refused_before_parsing() {
    let mut big = br#"{"type":"sync","req_id":""#.to_vec();
    big.resize(MAX_CLIENT_FRAME + 1 - 2, b'a');
    big.extend_from_slice(br#""}"#);
    assert_eq!(big.len(), MAX_CLIENT_FRAME + 1);
    for enc in ENCODINGS {
        let e = enc.decode_client(&big).unwrap_err();
        assert!(matches!(e, DecodeError::TooLarge(n) if n == MAX_CLIENT_FRAME + 1));
        assert_eq!(e.code(), ErrorCode::FrameTooLarge);
    }
    // One byte less is parsed (and is a valid sync).
    let mut ok = br#"{"type":"sync","req_id":""#.to_vec();
    ok.resize(MAX_CLIENT_FRAME - 2, b'a');
    ok.extend_from_slice(br#""}"#);
    assert!(matches!(
        Encoding::Json.decode_client(&ok),
        Ok(ClientMsg::Sync { .. })
    ));
}

#[test]
fn deeply_nested_frames_are_errors_not_stack_overflows() {
    let frames: Vec<(Encoding, Vec<u8>)> = vec![
        (Encoding::Json, vec![b'['; MAX_CLIENT_FRAME]),
        (
            Encoding::Json,
            [br#"{"type":"ping","t0":"#.as_slice(), &[b'['; 4000]].concat(),
        ),
        // fixarray(1) and fixmap(1) nested as deep as a frame allows.
        (Encoding::MsgPack, vec![0x91; MAX_CLIENT_FRAME]),
        (Encoding::MsgPack, vec![0x81; MAX_CLIENT_FRAME]),
        (
            Encoding::MsgPack,
            [
                &[
                    0x82, 0xa4, b't', b'y', b'p', b'e', 0xa4, b'p', b'i', b'n', b'g', 0xa2, b't',
                    b'0',
                ][..],
                &[0x91; 4000],
            ]
            .concat(),
        ),
    ];
    for (enc, f) in frames {
        assert!(enc.decode_client(&f).is_err(), "{enc:?}");
        let _ = enc.decode::<ServerMsg>(&f);
    }
}

#[test]
fn unknown_type_and_missing_fields_are_bad_frames() {
    for json in [
        r#"{"type":"hack"}"#,
        r#"{"type":"confirm","req_id":"1"}"#,
        r#"{"req_id":"1","unit":"A"}"#,
        r#"{"type":"ping","t0":"soon"}"#,
        r#"{"type":"edit","req_id":"1","list":"basket","edit":"add","unit":"A"}"#,
        r#"[]"#,
        r#""#,
        r#"null"#,
    ] {
        let e = Encoding::Json.decode_client(json.as_bytes()).unwrap_err();
        assert_eq!(e.code(), ErrorCode::BadFrame, "{json}");
    }
}

#[test]
fn msgpack_and_json_carry_the_same_shape() {
    // A MessagePack frame is the JSON object as a map with the same keys, so a client
    // can switch encodings without another schema.
    let msg = ClientMsg::Confirm {
        req_id: "r1".into(),
        unit: UnitId::new("1-1203"),
    };
    let from_pack: serde_json::Value =
        rmp_serde::from_slice(&Encoding::MsgPack.encode(&msg).unwrap()).unwrap();
    let from_json: serde_json::Value =
        serde_json::from_slice(&Encoding::Json.encode(&msg).unwrap()).unwrap();
    assert_eq!(from_pack, from_json);
}

#[test]
fn snapshot_parts_keep_frames_small_and_carry_the_whole_board() {
    use xuanfang_hub::protocol::{snapshot_parts, SNAPSHOT_PART, SNAPSHOT_SESSIONS_PART};
    let board_taken: Vec<_> = (0..100).map(sample_taken).collect();
    let board_sessions: Vec<_> = (0..10).map(sample_session).collect();
    let parts = snapshot_parts(7, 99, &board_taken, &board_sessions);
    assert_eq!(
        parts.len(),
        100usize
            .div_ceil(SNAPSHOT_PART)
            .max(10usize.div_ceil(SNAPSHOT_SESSIONS_PART))
    );
    let (mut taken, mut sessions) = (Vec::new(), Vec::new());
    for (i, p) in parts.iter().enumerate() {
        let ServerMsg::Snapshot {
            epoch,
            seq,
            part,
            parts: n,
            taken: t,
            sessions: s,
        } = p
        else {
            panic!("not a snapshot");
        };
        assert_eq!(
            (*epoch, *seq, *part as usize, *n as usize),
            (7, 99, i, parts.len())
        );
        assert!(t.len() <= SNAPSHOT_PART && s.len() <= SNAPSHOT_SESSIONS_PART);
        taken.extend(t.iter().cloned());
        sessions.extend(s.iter().cloned());
    }
    assert_eq!(taken, board_taken);
    assert_eq!(sessions, board_sessions);
    // An empty board is still one frame.
    assert_eq!(snapshot_parts(1, 1, &[], &[]).len(), 1);
}

fn sample_taken(i: u32) -> xuanfang_hub::protocol::TakenUnit {
    xuanfang_hub::protocol::TakenUnit {
        unit: xuanfang_hub::UnitId(format!("U{i}")),
        family_name: "王*".into(),
        rank: i,
        how: xuanfang_hub::How::Confirmed,
        at: xuanfang_hub::Millis(i64::from(i)),
    }
}

fn sample_session(i: u32) -> xuanfang_hub::protocol::SessionInfo {
    xuanfang_hub::protocol::SessionInfo {
        id: xuanfang_hub::SessionId(format!("S{i}")),
        kind: xuanfang_hub::SessionKind::Formal,
        start: xuanfang_hub::Millis(0),
        deadline: xuanfang_hub::Millis(1),
        families: 1,
        first_rank: i,
        last_rank: i,
        closed: false,
    }
}

/// A clock never reads NaN or infinity, and a JSON `pong` could not echo one (serde_json
/// writes `null`): such a `ping`, which only MessagePack can carry, is a bad frame,
/// whatever the socket's encoding.
#[test]
fn a_ping_with_a_non_finite_t0_is_a_bad_frame() {
    for t0 in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let bytes = rmp_serde::to_vec_named(&ClientMsg::Ping { t0 }).unwrap();
        let err = Encoding::MsgPack.decode_client(&bytes).unwrap_err();
        assert!(matches!(err, DecodeError::NonFiniteT0), "{t0}: {err}");
        assert_eq!(err.code(), ErrorCode::BadFrame);
    }
    // JSON has no spelling for them at all.
    for text in [
        r#"{"type":"ping","t0":NaN}"#,
        r#"{"type":"ping","t0":null}"#,
    ] {
        assert!(
            Encoding::Json.decode_client(text.as_bytes()).is_err(),
            "{text}"
        );
    }
    let finite = rmp_serde::to_vec_named(&ClientMsg::Ping { t0: -0.5 }).unwrap();
    assert_eq!(
        Encoding::MsgPack.decode_client(&finite).unwrap(),
        ClientMsg::Ping { t0: -0.5 }
    );
}

/// A view is older than another when read at an earlier event seq, whatever the clocks
/// say (two gateways' clocks differ, and one millisecond holds many actions); at the
/// same seq the state is the same and the later server time (the phase) wins.
#[test]
fn a_view_is_ordered_by_seq_then_server_time() {
    use proptest::strategy::ValueTree;
    let at = |seq: u64, t: i64| {
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let mut v = family_view().new_tree(&mut runner).unwrap().current();
        v.seq = seq;
        v.server_time = Millis(t);
        v
    };
    let pushed = at(41, 2_000);
    let reply = at(42, 1_000);
    assert!(pushed.older_than(&reply));
    assert!(!reply.older_than(&pushed));
    let later_phase = at(42, 1_500);
    assert!(reply.older_than(&later_phase));
    assert!(!later_phase.older_than(&reply));
    // The same view is not older than itself: a repeat of it replaces nothing wrongly.
    assert!(!reply.older_than(&reply.clone()));
}
