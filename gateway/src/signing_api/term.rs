//! The lease term the phone shows (租期): the same rule as the lease PDF
//! ([`documents::term`]): from the first day of the month after signing, `term_years`
//! long. Signed: from the day of the current contract's signature; not yet: projected
//! from today.

use std::collections::HashMap;

use parking_lot::Mutex;
use serde::Serialize;
use xuanfang_allocator::SigningView;
use xuanfang_hub::signing::Step;
use xuanfang_hub::{BatchId, FamilyId, Millis};

use super::documents::{local_date, term};
use super::materials::contract_signed_at;
use super::Signing;

/// `{start, end}` as ISO dates (`2027-01-01`), inclusive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LeaseTerm {
    pub start: String,
    pub end: String,
    /// `true` while no contract is signed: the term if it were signed today.
    pub projected: bool,
}

/// When each signed contract was signed, by (batch, family, PDF hash): the log is
/// scanned once per contract and process, not on every page view.
#[derive(Default)]
pub struct SignedAt(Mutex<HashMap<(BatchId, FamilyId, String), Millis>>);

fn iso(d: xuanfang_documents::Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year, d.month, d.day)
}

/// The term of `view`'s lease in the batch's local time (`offset_minutes` east of UTC).
/// `None` when the signing log cannot be read (the page goes without it).
pub async fn lease_term(
    sg: &Signing,
    batch: &BatchId,
    view: &SigningView,
    offset_minutes: i32,
) -> Option<LeaseTerm> {
    let signed = match &view.contract {
        Some(c) if view.done.contains(&Step::Contract) => Some(c.pdf.sha256.to_string()),
        _ => None,
    };
    let from = match signed {
        None => view.now,
        Some(sha) => {
            let key = (batch.clone(), view.family.clone(), sha);
            let known = sg.signed_at.0.lock().get(&key).copied();
            match known {
                Some(at) => at,
                None => {
                    let at = contract_signed_at(sg, batch, &view.family).await.ok()??;
                    sg.signed_at.0.lock().insert(key, at);
                    at
                }
            }
        }
    };
    let (start, end) = term(local_date(from, offset_minutes), sg.terms.term_years);
    Some(LeaseTerm {
        start: iso(start),
        end: iso(end),
        projected: !view.done.contains(&Step::Contract),
    })
}
