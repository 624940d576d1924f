//! `Batch::validate`: the id rules every engine applies when a batch is loaded, and
//! validation staying linear in the size of a batch.

use xuanfang_hub::domain::{check_id, BatchError, IdKind, IdProblem, MAX_ID_BYTES};
use xuanfang_hub::{
    Batch, BatchId, Event, EventKind, Family, FamilyId, Layout, Millis, Selection, Session,
    SessionId, SessionKind, Unit, UnitId,
};

const T0: i64 = 1_749_258_000_000;

/// `n` units and `n` families, all in one formal session.
fn batch(n: u32) -> Batch {
    let layout = Layout::new("一房一厅");
    let families: Vec<Family> = (1..=n)
        .map(|i| Family {
            id: FamilyId::new(format!("F{i}")),
            name: format!("张*{i}"),
            rank: i,
            session: SessionId::new("S1"),
            eligible_layouts: vec![layout.clone()],
        })
        .collect();
    Batch {
        id: BatchId::new("b1"),
        name: "批次".into(),
        preselect_start: Millis(T0),
        preselect_end: None,
        utc_offset_minutes: 480,
        units: (1..=n)
            .map(|i| Unit {
                id: UnitId::new(format!("U{i}")),
                building: "1栋".into(),
                number: format!("{i}"),
                floor: 1,
                layout: layout.clone(),
                area: 40.0,
                orientation: "南".into(),
                rent: 1000.0,
            })
            .collect(),
        sessions: vec![Session {
            id: SessionId::new("S1"),
            kind: SessionKind::Formal,
            start: Millis(T0 + 3_600_000),
            window_ms: 180_000,
            families: families.iter().map(|f| f.id.clone()).collect(),
        }],
        families,
    }
}

/// The batch with one id of `kind` replaced by `id` everywhere it is named.
fn with_id(kind: IdKind, id: &str) -> Batch {
    let mut b = batch(3);
    match kind {
        IdKind::Batch => b.id = BatchId::new(id),
        IdKind::Unit => b.units[1].id = UnitId::new(id),
        IdKind::Family => {
            b.families[1].id = FamilyId::new(id);
            b.sessions[0].families[1] = FamilyId::new(id);
        }
        IdKind::Session => {
            b.sessions[0].id = SessionId::new(id);
            for f in &mut b.families {
                f.session = SessionId::new(id);
            }
        }
    }
    b
}

const KINDS: [IdKind; 4] = [IdKind::Batch, IdKind::Unit, IdKind::Family, IdKind::Session];

fn problem(b: &Batch) -> Option<(IdKind, IdProblem)> {
    match b.validate() {
        Ok(()) => None,
        Err(BatchError::BadId(kind, _, p)) => Some((kind, p)),
        Err(other) => panic!("refused for another reason: {other}"),
    }
}

#[test]
fn ids_with_control_characters_are_refused_for_every_kind() {
    for kind in KINDS {
        for id in [
            "a\nb",
            "a\r",
            "\tx",
            "x\u{0}",
            "x\u{7f}",
            "x\u{85}",
            "\u{1b}[31m",
        ] {
            assert_eq!(
                problem(&with_id(kind, id)),
                Some((kind, IdProblem::Control)),
                "{kind:?} {id:?}"
            );
        }
    }
}

#[test]
fn empty_ids_and_ids_over_64_bytes_are_refused_for_every_kind() {
    assert_eq!(MAX_ID_BYTES, 64);
    for kind in KINDS {
        assert_eq!(
            problem(&with_id(kind, "")),
            Some((kind, IdProblem::Empty)),
            "{kind:?}"
        );
        let long = "x".repeat(65);
        assert_eq!(
            problem(&with_id(kind, &long)),
            Some((kind, IdProblem::TooLong)),
            "{kind:?}"
        );
        assert_eq!(problem(&with_id(kind, &"x".repeat(64))), None, "{kind:?}");
        // The limit is in bytes: 21 Chinese characters fit, 22 do not.
        assert_eq!(problem(&with_id(kind, &"批".repeat(21))), None, "{kind:?}");
        assert_eq!(
            problem(&with_id(kind, &"批".repeat(22))),
            Some((kind, IdProblem::TooLong)),
            "{kind:?}"
        );
    }
}

#[test]
fn batch_ids_hold_only_letters_and_digits_of_any_script_dash_underscore_and_dot() {
    for ok in ["b1", "2025年第一批", "batch-2025.06_a", "Ünïcode", "٣٤"] {
        assert_eq!(check_id(IdKind::Batch, ok), Ok(()), "{ok:?}");
        assert_eq!(problem(&with_id(IdKind::Batch, ok)), None, "{ok:?}");
    }
    for bad in [
        "a b",
        "a/b",
        "..\\x",
        "a\"b",
        "a;b",
        "a%b",
        "名 单",
        "a\u{202e}b",
        "a\u{3000}b",
    ] {
        assert_eq!(
            problem(&with_id(IdKind::Batch, bad)),
            Some((IdKind::Batch, IdProblem::NotBatchSafe)),
            "{bad:?}"
        );
    }
}

#[test]
fn unit_family_and_session_ids_may_hold_spaces_and_punctuation() {
    for kind in [IdKind::Unit, IdKind::Family, IdKind::Session] {
        for ok in ["1栋 A-1203", "F/0001", "第1场 (上午)", "a\"b"] {
            assert_eq!(problem(&with_id(kind, ok)), None, "{kind:?} {ok:?}");
        }
    }
}

#[test]
fn a_refused_id_is_shown_escaped_in_the_message() {
    let e = with_id(IdKind::Batch, "evil\r\nX-Injected: 1")
        .validate()
        .unwrap_err()
        .to_string();
    assert!(!e.contains('\r') && !e.contains('\n'), "{e}");
    assert!(e.contains(r#""evil\r\nX-Injected: 1""#), "{e}");
    assert!(e.contains("batch (批次)"), "{e}");
}

#[test]
fn a_logged_batch_with_an_id_from_before_the_id_rules_still_replays() {
    // Journals and streams written before the rules must still load after an upgrade.
    let old = with_id(IdKind::Batch, "2025 第一批");
    assert!(old.validate().is_err());
    let loaded = Event {
        seq: 1,
        at: Millis(T0),
        event: EventKind::BatchLoaded { batch: old.clone() },
    };
    let sel = Selection::replay([&loaded]).expect("replays");
    assert_eq!(sel.batch(), &old);
    // Broken structure is still refused on replay.
    let mut broken = old;
    broken.families[1].rank = 1;
    let loaded = Event {
        seq: 1,
        at: Millis(T0),
        event: EventKind::BatchLoaded { batch: broken },
    };
    assert!(Selection::replay([&loaded]).is_err());
}

#[test]
fn a_session_of_100_000_families_validates() {
    // Validation is linear (a set of session members, not a search per family): 100,000
    // families in one session took 93 s when it was quadratic, well under 1 s now. Speed
    // is a benchmark's business (docs/benchmarks.md); this checks the large case is valid.
    batch(100_000).validate().unwrap();
}

#[test]
fn free_text_longer_than_64_characters_or_with_control_characters_is_refused() {
    let mut b = batch(3);
    b.families[0].name = "张".repeat(64);
    b.units[0].building = "一".repeat(64);
    assert!(b.validate().is_ok(), "64 characters, any script, are fine");
    let cases: [fn(&mut Batch); 7] = [
        |b| b.name = "批".repeat(65),
        |b| b.families[1].name = "x".repeat(15 * 1024 * 1024),
        |b| b.families[1].name = "王\n五".into(),
        |b| b.units[1].building = "1栋\r".into(),
        |b| b.units[1].number = "1".repeat(65),
        |b| b.units[1].orientation = "南\u{7}".into(),
        |b| b.families[1].eligible_layouts[0] = Layout::new("一".repeat(65)),
    ];
    for (i, change) in cases.iter().enumerate() {
        let mut b = batch(3);
        change(&mut b);
        assert!(
            matches!(
                b.validate(),
                Err(xuanfang_hub::domain::BatchError::BadText { .. })
            ),
            "case {i}"
        );
        // A replayed log keeps what it had: the structure check does not look at text.
        assert!(b.validate_structure().is_ok(), "case {i}");
    }
}
