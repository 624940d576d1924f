//! A history checker for fault tests: every answer a client was given, held against the
//! final event log.
//!
//! A fault test breaks something (a process, Redis, a disk) while clients act, and then
//! must show that **nothing acknowledged is lost**. Clients record each reply they got
//! ([`History::record`]); at the end [`History::check`] reads the batch's whole log and
//! lists every way it disagrees with what clients were told:
//!
//! - the log is gapless (seq 1, 2, 3, …) and starts with `batch_loaded`;
//! - every confirm answered `ok` is in the log as `selected` (confirmed) with that unit;
//! - no unit is given twice, no family has two outcomes, no session closes twice;
//! - every refusal is consistent with the log: `unit_taken` names a unit another family
//!   holds, `already_has_unit` a family that has a unit, `waived` a family that waived;
//! - one `(family, req_id)` always got the same answer (a retry returns the original).
//!
//! An `internal`, `unavailable` or `rate_limited` error is *not* an answer (the client may
//! retry with the same req_id), so it is not recorded as one; the test counts them instead.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Mutex;

use xuanfang_hub::protocol::ServerMsg;
use xuanfang_hub::{ErrorCode, Event, EventKind, FamilyId, How, SessionId, UnitId};

/// What one request was answered, as far as the checker cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// `ok` to a confirm of this unit.
    Confirmed(UnitId),
    /// `ok` to any other action.
    Ok,
    /// A refusal with its code (and unit, when the refusal names one).
    Refused(ErrorCode, Option<UnitId>),
}

/// One acknowledged reply.
#[derive(Clone, Debug)]
pub struct Ack {
    pub family: FamilyId,
    pub req_id: String,
    pub answer: Answer,
}

/// Whether a reply was an answer or an error the client should retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `ok` or a refusal of the rules: final for this req_id.
    Answered,
    /// `internal` / `unavailable`: nothing is known; retry with the same req_id.
    Retry(ErrorCode),
}

/// Counts from a passing check, for the test's own assertions.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub acks: usize,
    pub confirmed: usize,
    pub refused: usize,
    /// Units taken in the log (confirmed or automatic).
    pub taken: usize,
    /// Families decided at a deadline.
    pub automatic: usize,
    pub sessions_closed: usize,
}

/// The disagreements a check found, one line each.
#[derive(Debug)]
pub struct Violations(pub Vec<String>);

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} history violation(s):", self.0.len())?;
        for v in &self.0 {
            writeln!(f, "  - {v}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Violations {}

/// Every acknowledged reply of a test; shared by its clients (`&History` is `Sync`).
#[derive(Debug, Default)]
pub struct History {
    acks: Mutex<Vec<Ack>>,
}

/// Codes that mean "not decided, retry": not acknowledgements. `rate_limited` is the
/// gateway's (the engine never saw the request).
pub fn is_retryable(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::Internal | ErrorCode::Unavailable | ErrorCode::RateLimited
    )
}

impl History {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an acknowledged answer.
    pub fn push(&self, family: &FamilyId, req_id: &str, answer: Answer) {
        self.acks.lock().unwrap().push(Ack {
            family: family.clone(),
            req_id: req_id.to_owned(),
            answer,
        });
    }

    /// Records a reply to a request of `family` (`confirm` = the unit it confirmed, if
    /// it was a confirm) and says whether it was an answer or a retryable error.
    pub fn record(
        &self,
        family: &FamilyId,
        req_id: &str,
        confirm: Option<&UnitId>,
        reply: &ServerMsg,
    ) -> Reply {
        let answer = match reply {
            ServerMsg::Ok { .. } => match confirm {
                Some(u) => Answer::Confirmed(u.clone()),
                None => Answer::Ok,
            },
            ServerMsg::Error { code, .. } if is_retryable(*code) => return Reply::Retry(*code),
            ServerMsg::Error { code, unit, .. } => Answer::Refused(*code, unit.clone()),
            other => panic!("not a reply: {other:?}"),
        };
        self.push(family, req_id, answer);
        Reply::Answered
    }

    /// Every acknowledged reply so far.
    pub fn acks(&self) -> Vec<Ack> {
        self.acks.lock().unwrap().clone()
    }

    /// Holds every acknowledged reply against the batch's whole event log.
    pub fn check(&self, log: &[Event]) -> Result<Summary, Violations> {
        let acks = self.acks();
        let mut bad = Vec::new();
        let mut summary = Summary {
            acks: acks.len(),
            ..Summary::default()
        };

        // The log itself: gapless, from batch_loaded.
        match log.first() {
            Some(Event {
                seq: 1,
                event: EventKind::BatchLoaded { .. },
                ..
            }) => {}
            other => bad.push(format!(
                "the log does not start with batch_loaded at seq 1: {other:?}"
            )),
        }
        for w in log.windows(2) {
            if w[1].seq != w[0].seq + 1 {
                bad.push(format!("gap in the log: {} then {}", w[0].seq, w[1].seq));
            }
        }

        // Outcomes in the log.
        let mut holder: HashMap<&UnitId, &FamilyId> = HashMap::new();
        let mut selected: HashMap<&FamilyId, (&UnitId, How)> = HashMap::new();
        let mut outcome: HashSet<&FamilyId> = HashSet::new();
        let mut waived: HashSet<&FamilyId> = HashSet::new();
        let mut closed: HashSet<&SessionId> = HashSet::new();
        for e in log {
            match &e.event {
                EventKind::Selected { family, unit, how } => {
                    if let Some(other) = holder.insert(unit, family) {
                        bad.push(format!(
                            "unit {unit} given twice: to {other} and to {family} (seq {})",
                            e.seq
                        ));
                    }
                    if !outcome.insert(family) {
                        bad.push(format!("family {family} has two outcomes (seq {})", e.seq));
                    }
                    selected.insert(family, (unit, *how));
                    summary.taken += 1;
                    if *how == How::Automatic {
                        summary.automatic += 1;
                    }
                }
                EventKind::NoUnit { family, .. } if !outcome.insert(family) => {
                    bad.push(format!("family {family} has two outcomes (seq {})", e.seq));
                }
                EventKind::Waived { family } => {
                    if !outcome.insert(family) {
                        bad.push(format!("family {family} has two outcomes (seq {})", e.seq));
                    }
                    waived.insert(family);
                }
                EventKind::SessionClosed { session } => {
                    if !closed.insert(session) {
                        bad.push(format!("session {session} closed twice (seq {})", e.seq));
                    }
                    summary.sessions_closed += 1;
                }
                _ => {}
            }
        }

        // One answer per (family, req_id).
        let mut first: HashMap<(&FamilyId, &str), &Answer> = HashMap::new();
        for a in &acks {
            if let Some(prev) = first.insert((&a.family, &a.req_id), &a.answer) {
                if *prev != a.answer {
                    bad.push(format!(
                        "{} {} was answered {prev:?} and then {:?}",
                        a.family, a.req_id, a.answer
                    ));
                }
            }
        }

        // Each answer against the log.
        for a in &acks {
            let f = &a.family;
            match &a.answer {
                Answer::Confirmed(u) => {
                    summary.confirmed += 1;
                    match selected.get(f) {
                        Some((held, How::Confirmed)) if *held == u => {}
                        got => bad.push(format!(
                            "{f} {} was told it confirmed {u}, the log has {got:?}",
                            a.req_id
                        )),
                    }
                }
                Answer::Ok => {}
                Answer::Refused(code, unit) => {
                    summary.refused += 1;
                    match code {
                        ErrorCode::UnitTaken => match unit.as_ref().map(|u| holder.get(u)) {
                            Some(Some(h)) if *h != f => {}
                            got => bad.push(format!(
                                "{f} {} was refused unit_taken for {unit:?}, the log's holder: {got:?}",
                                a.req_id
                            )),
                        },
                        ErrorCode::AlreadyHasUnit if !selected.contains_key(f) => bad.push(
                            format!("{f} {} was refused already_has_unit, the log gives it none", a.req_id),
                        ),
                        ErrorCode::Waived if !waived.contains(f) => bad.push(format!(
                            "{f} {} was refused waived, the log has no waiver",
                            a.req_id
                        )),
                        _ => {}
                    }
                }
            }
        }
        if bad.is_empty() {
            Ok(summary)
        } else {
            Err(Violations(bad))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xuanfang_hub::{Batch, BatchId, Millis};

    fn ev(seq: u64, event: EventKind) -> Event {
        Event {
            seq,
            at: Millis(0),
            event,
        }
    }

    fn log(tail: Vec<EventKind>) -> Vec<Event> {
        let batch = Batch {
            id: BatchId::from("b"),
            name: "b".into(),
            preselect_start: Millis(0),
            preselect_end: None,
            utc_offset_minutes: 480,
            units: vec![],
            families: vec![],
            sessions: vec![],
        };
        std::iter::once(EventKind::BatchLoaded { batch })
            .chain(tail)
            .zip(1..)
            .map(|(e, s)| ev(s, e))
            .collect()
    }

    fn selected(f: &str, u: &str, how: How) -> EventKind {
        EventKind::Selected {
            family: FamilyId::from(f),
            unit: UnitId::from(u),
            how,
        }
    }

    #[test]
    fn an_acknowledged_confirm_missing_from_the_log_is_a_violation() {
        let h = History::new();
        h.push(&"F1".into(), "r1", Answer::Confirmed("U1".into()));
        h.push(&"F2".into(), "r1", Answer::Confirmed("U2".into()));
        let err = h
            .check(&log(vec![selected("F1", "U1", How::Confirmed)]))
            .unwrap_err();
        assert_eq!(err.0.len(), 1, "{err}");
        assert!(err.0[0].contains("F2"), "{err}");
    }

    #[test]
    fn a_unit_given_twice_and_a_family_with_two_units_are_violations() {
        let h = History::new();
        let err = h
            .check(&log(vec![
                selected("F1", "U1", How::Confirmed),
                selected("F2", "U1", How::Automatic),
                selected("F1", "U3", How::Automatic),
            ]))
            .unwrap_err();
        assert_eq!(err.0.len(), 2, "{err}");
    }

    #[test]
    fn refusals_must_agree_with_the_log_and_retries_with_the_first_answer() {
        let h = History::new();
        let taken = |u: &str| Answer::Refused(ErrorCode::UnitTaken, Some(u.into()));
        h.push(&"F2".into(), "r1", taken("U1")); // consistent: F1 holds U1
        h.push(&"F2".into(), "r2", taken("U9")); // nobody holds U9
        h.push(
            &"F3".into(),
            "r1",
            Answer::Refused(ErrorCode::AlreadyHasUnit, None),
        );
        h.push(&"F1".into(), "r1", Answer::Confirmed("U1".into()));
        // A retry answered differently (and refused a unit the family holds itself).
        h.push(&"F1".into(), "r1", taken("U1"));
        let err = h
            .check(&log(vec![selected("F1", "U1", How::Confirmed)]))
            .unwrap_err();
        assert_eq!(err.0.len(), 4, "{err}");
    }

    #[test]
    fn a_gap_and_a_session_closed_twice_are_violations() {
        let h = History::new();
        let mut l = log(vec![
            EventKind::SessionClosed {
                session: SessionId::from("S1"),
            },
            EventKind::SessionClosed {
                session: SessionId::from("S1"),
            },
        ]);
        l[2].seq = 5;
        assert_eq!(h.check(&l).unwrap_err().0.len(), 2);
    }

    #[test]
    fn a_consistent_history_passes_with_its_counts() {
        let h = History::new();
        h.push(&"F1".into(), "r1", Answer::Confirmed("U1".into()));
        h.push(&"F1".into(), "r1", Answer::Confirmed("U1".into()));
        h.push(
            &"F2".into(),
            "r1",
            Answer::Refused(ErrorCode::UnitTaken, Some("U1".into())),
        );
        let s = h
            .check(&log(vec![
                selected("F1", "U1", How::Confirmed),
                selected("F2", "U2", How::Automatic),
                EventKind::SessionClosed {
                    session: SessionId::from("S1"),
                },
            ]))
            .unwrap();
        assert_eq!((s.confirmed, s.refused, s.taken, s.automatic), (2, 1, 2, 1));
    }
}
