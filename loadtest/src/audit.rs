//! The consistency audit at the end of a run, from the operator API's event log and
//! results export and from what every client saw:
//!
//! - the log replays without a gap ([`Selection::replay`]);
//! - no unit was given twice, no family got two results;
//! - each automatic result is the first intention (in list order) that nobody held at
//!   that moment, and a session's automatic results go in rank order;
//! - every outcome a family was shown (and every confirm `ok`) is its final result;
//! - the results export agrees with the log;
//! - every connection reached the log's last seq with an unbroken chain and the same
//!   set of taken units as the log.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use xuanfang_hub::selection::{NoUnitReason, Outcome};
use xuanfang_hub::{Event, EventKind, FamilyId, How, Selection, SessionId, UnitId};

use crate::client::{unit_hash, ConnReport, FamilyReport};

/// One named check and what it found.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    /// What was checked, or the first problems found.
    pub detail: String,
}

/// Final counts of the families the tool played.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcomes {
    pub confirmed: usize,
    pub automatic: usize,
    pub no_unit: usize,
    pub waived: usize,
    pub pending: usize,
}

/// The audit's verdict.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Audit {
    pub passed: bool,
    pub final_seq: u64,
    pub events: usize,
    pub taken: usize,
    pub played: Outcomes,
    pub checks: Vec<Check>,
}

/// Everything the audit looks at.
pub struct Input<'a> {
    pub events: &'a [Event],
    /// Family id → unit id from the results export (`None`: not fetched).
    pub results: Option<&'a HashMap<String, String>>,
    pub conns: &'a [ConnReport],
    pub families: &'a [FamilyReport],
}

/// Problems of one check, shown up to a few.
#[derive(Default)]
struct Problems(Vec<String>, usize);

impl Problems {
    fn push(&mut self, p: String) {
        self.1 += 1;
        if self.0.len() < 5 {
            self.0.push(p);
        }
    }
    fn check(self, name: &str, ok_detail: String) -> Check {
        Check {
            name: name.to_owned(),
            passed: self.1 == 0,
            detail: if self.1 == 0 {
                ok_detail
            } else {
                format!("{} problem(s): {}", self.1, self.0.join("; "))
            },
        }
    }
}

/// The digest of a set of taken units, as clients keep it.
pub fn digest<'a>(units: impl Iterator<Item = &'a UnitId>) -> (u64, u64) {
    units.fold((0, 0), |(n, x), u| (n + 1, x ^ unit_hash(u)))
}

/// Runs every check.
pub fn run(input: &Input<'_>) -> Audit {
    let mut checks = Vec::new();
    let final_seq = input.events.last().map(|e| e.seq).unwrap_or(0);
    let replayed = match Selection::replay(input.events) {
        Ok(sel) => {
            checks.push(Check {
                name: "event log replays".into(),
                passed: true,
                detail: format!(
                    "{} events, seq 1..{final_seq} without a gap",
                    input.events.len()
                ),
            });
            Some(sel)
        }
        Err(e) => {
            checks.push(Check {
                name: "event log replays".into(),
                passed: false,
                detail: e.to_string(),
            });
            None
        }
    };
    let Some(final_sel) = replayed else {
        return Audit {
            passed: false,
            final_seq,
            events: input.events.len(),
            checks,
            ..Audit::default()
        };
    };
    checks.extend(step_checks(input.events));
    checks.push(families_saw_final(&final_sel, input.families));
    if let Some(results) = input.results {
        checks.push(export_matches(&final_sel, results));
    }
    checks.push(connections_complete(&final_sel, final_seq, input.conns));
    let mut played = Outcomes::default();
    for f in input.families {
        match final_sel.state(&f.family).and_then(|s| s.outcome.as_ref()) {
            Some(Outcome::Selected {
                how: How::Confirmed,
                ..
            }) => played.confirmed += 1,
            Some(Outcome::Selected {
                how: How::Automatic,
                ..
            }) => played.automatic += 1,
            Some(Outcome::NoUnit { .. }) => played.no_unit += 1,
            Some(Outcome::Waived { .. }) => played.waived += 1,
            None => played.pending += 1,
        }
    }
    Audit {
        passed: checks.iter().all(|c| c.passed),
        final_seq,
        events: input.events.len(),
        taken: final_sel.taken().len(),
        played,
        checks,
    }
}

/// Walks the log event by event, judging each result against the state just before it.
fn step_checks(events: &[Event]) -> Vec<Check> {
    let mut twice_unit = Problems::default();
    let mut twice_family = Problems::default();
    let mut auto = Problems::default();
    let Some(first) = events.first() else {
        return vec![];
    };
    let Ok(mut sel) = Selection::replay(std::iter::once(first)) else {
        return vec![];
    };
    let mut last_auto_rank: HashMap<SessionId, u32> = HashMap::new();
    let (mut selected, mut autos) = (0usize, 0usize);
    for e in &events[1..] {
        let decided = match &e.event {
            EventKind::Selected { family, unit, how } => {
                selected += 1;
                if let Some(h) = sel.taken().get(unit) {
                    twice_unit.push(format!(
                        "seq {}: {unit} to {family}, already held by {}",
                        e.seq, h.family
                    ));
                }
                if *how == How::Automatic {
                    autos += 1;
                    let (expected, declared) = first_free(&sel, family);
                    if expected.as_ref() != Some(unit) {
                        auto.push(format!(
                            "seq {}: {family} got {unit}, first free intention was {:?}",
                            e.seq, expected
                        ));
                    }
                    if !declared {
                        auto.push(format!(
                            "seq {}: {family} never entered formal selection",
                            e.seq
                        ));
                    }
                }
                Some((family, *how == How::Automatic))
            }
            EventKind::NoUnit { family, reason } => {
                autos += 1;
                let (expected, declared) = first_free(&sel, family);
                match reason {
                    NoUnitReason::NoFreeIntention | NoUnitReason::NoIntentions
                        if expected.is_some() =>
                    {
                        auto.push(format!(
                            "seq {}: {family} got no unit though {:?} was free",
                            e.seq, expected
                        ))
                    }
                    NoUnitReason::NoIntentions if !intentions_empty(&sel, family) => auto.push(
                        format!("seq {}: {family} told no intentions but had some", e.seq),
                    ),
                    NoUnitReason::Absent if declared => auto.push(format!(
                        "seq {}: {family} marked absent though it declared",
                        e.seq
                    )),
                    _ => {}
                }
                Some((family, true))
            }
            EventKind::Waived { family } => Some((family, false)),
            _ => None,
        };
        if let Some((family, automatic)) = decided {
            if sel.state(family).is_some_and(|s| s.outcome.is_some()) {
                twice_family.push(format!("seq {}: {family} decided a second time", e.seq));
            }
            if automatic {
                let rank = sel.batch().family(family).map(|f| f.rank).unwrap_or(0);
                if let Some(s) = sel.current_session(family) {
                    let last = last_auto_rank.entry(s.id.clone()).or_insert(0);
                    if rank <= *last {
                        auto.push(format!(
                            "seq {}: {family} (rank {rank}) decided after rank {} in {}",
                            e.seq, last, s.id
                        ));
                    }
                    *last = rank;
                }
            }
        }
        sel.apply(e);
    }
    vec![
        twice_unit.check(
            "no unit twice",
            format!("{selected} units taken, each once"),
        ),
        twice_family.check(
            "no family twice",
            "every family decided at most once".into(),
        ),
        auto.check(
            "auto-confirm took the first free intention, in rank order",
            format!("{autos} automatic decisions replayed"),
        ),
    ]
}

/// The first intention nobody holds, and whether the family declared for formal selection.
fn intentions_empty(sel: &Selection, family: &FamilyId) -> bool {
    sel.state(family).is_none_or(|st| st.intentions.is_empty())
}

fn first_free(sel: &Selection, family: &FamilyId) -> (Option<UnitId>, bool) {
    let Some(st) = sel.state(family) else {
        return (None, false);
    };
    let free = st
        .intentions
        .iter()
        .find(|u| !sel.taken().contains_key(*u))
        .cloned();
    (free, st.formal_declared_at.is_some())
}

fn families_saw_final(sel: &Selection, families: &[FamilyReport]) -> Check {
    let mut p = Problems::default();
    let mut n = 0;
    for f in families {
        let fin = sel.state(&f.family).and_then(|s| s.outcome.clone());
        if let Some(seen) = &f.outcome_seen {
            n += 1;
            if Some(seen) != fin.as_ref() {
                p.push(format!("{} was shown {seen:?}, final is {fin:?}", f.family));
            }
        }
        if let Some(u) = &f.confirmed {
            let ok = matches!(&fin, Some(Outcome::Selected { unit, how: How::Confirmed, .. }) if unit == u);
            if !ok {
                p.push(format!("{} got ok for {u}, final is {fin:?}", f.family));
            }
        }
    }
    p.check(
        "every ok a family saw matches the final result",
        format!("{n} families' outcomes match the log"),
    )
}

fn export_matches(sel: &Selection, results: &HashMap<String, String>) -> Check {
    let mut p = Problems::default();
    let mut n = 0;
    for (fam, st) in sel.family_states() {
        n += 1;
        let want = st
            .outcome
            .as_ref()
            .and_then(|o| o.unit())
            .map(|u| u.to_string())
            .unwrap_or_default();
        match results.get(fam.id.as_str()) {
            Some(got) if *got == want => {}
            got => p.push(format!("{}: export {got:?}, log {want:?}", fam.id)),
        }
    }
    if results.len() != n {
        p.push(format!(
            "export has {} rows, batch {n} families",
            results.len()
        ));
    }
    p.check("results export matches the log", format!("{n} rows agree"))
}

fn connections_complete(sel: &Selection, final_seq: u64, conns: &[ConnReport]) -> Check {
    let want = digest(sel.taken().keys());
    let mut p = Problems::default();
    let mut epochs = HashSet::new();
    let (mut resumed, mut resynced) = (0, 0);
    for c in conns {
        let t = &c.track;
        if let Some(e) = t.epoch {
            epochs.insert(e);
        }
        resumed += c.reconnects;
        resynced += t.resyncs;
        let who = match &c.family {
            Some(f) => format!("conn {} ({f})", c.id),
            None => format!("conn {}", c.id),
        };
        if !t.started {
            p.push(format!("{who}: never got the board ({:?})", c.error));
        } else if t.seq != final_seq {
            p.push(format!("{who}: ended at seq {}, log at {final_seq}", t.seq));
        } else if t.breaks > 0 || t.regressions > 0 {
            p.push(format!(
                "{who}: {} chain break(s), {} regression(s)",
                t.breaks, t.regressions
            ));
        } else if (t.taken_count, t.taken_xor) != want {
            p.push(format!(
                "{who}: board of {} taken units differs from the log's {}",
                t.taken_count, want.0
            ));
        }
    }
    if epochs.len() > 1 {
        p.push(format!("connections saw {} epochs", epochs.len()));
    }
    p.check(
        "every connection saw every seq",
        format!(
            "{} connections at seq {final_seq} with the log's {} taken units ({resumed} reconnects, {resynced} snapshot resyncs)",
            conns.len(),
            want.0
        ),
    )
}
