//! Signing in the Redis engine: optimistic concurrency, the rules decided once, in hub.
//!
//! Why not one Lua script per signing operation, as for the selection: the signing
//! rules (steps, reopening, face attempts, deposit orders and payments) are large and
//! change with the bureau's terms; a second copy in Lua would drift from hub. Instead
//! each change is
//!
//! 1. a read (`signing_read.lua`, atomic): the family's signing entries (its own stream
//!    `{b:<batch>}:signing:fam:<family>`), its head seq, a reply already given to the
//!    request, and the server time;
//! 2. hub's decision on that snapshot ([`SigningBook::decide`],
//!    [`SigningBook::decide_callback`], [`SigningRecord::decide_open`]);
//! 3. a compare-and-append (`signing_append.lua`, atomic): only if the family's head
//!    seq is unchanged, it appends the events to the family stream and to the batch's
//!    signing stream `{b:<batch>}:signing` (the next batch seq each, so the log is
//!    gapless), writes the face-session and order-number lookups, checks those are new
//!    in the batch, and stores the idempotent reply. Otherwise it changes nothing and
//!    the engine reads and decides again.
//!
//! So every state change is atomic and consistent across gateways per family, and no
//! rule exists twice. The cost is a retry under contention on one family (rare: one
//! family's phone, a provider, an operator). The decision's server time is the
//! snapshot's `TIME`; the append follows within a round trip.
//!
//! Personal data is sealed before the append ([`Sealer::seal_entry`]): no card number
//! or phone is in clear in any key.

use std::collections::HashMap;

use redis::streams::{StreamId, StreamRangeReply};
use redis::{AsyncCommands, FromRedisValue, Value};
use xuanfang_hub::signing::{Actor, SigningEvent};
use xuanfang_hub::{
    BatchId, ErrorCode, FamilyId, Millis, Rejection, SigningAction, SigningBook, SigningEntry,
    SigningRecord, UnitId,
};

use super::keys::BatchKeys;
use super::{corrupt, json, reply, scripts, RedisEngine};
use crate::contract::AllocError;
use crate::sealing::Sealer;
use crate::signing_contract::{
    actor_key, remember_refusal, CallbackAnswer, SigningAnswer, SigningFilter, SigningStore,
    SigningView,
};

/// How many times a decision that lost the compare-and-append is made again.
const CAS_RETRIES: usize = 32;
/// Entries read per XRANGE when a whole signing log is replayed.
const RANGE_CHUNK: usize = 1000;

/// A family's signing as `signing_read.lua` saw it.
struct Snapshot {
    now: Millis,
    /// The reply stored for the request, or empty.
    prior: String,
    head: String,
    entries: Vec<SigningEntry>,
    fields: HashMap<String, String>,
}

/// A book holding one family's record only: enough for hub to decide on that family
/// (the batch-wide uniqueness of references is checked by the append script).
fn family_book(entries: &[SigningEntry]) -> SigningBook {
    let mut book = SigningBook::new();
    for e in entries {
        book.apply(e);
    }
    book
}

fn seq_of(id: &str) -> Result<u64, AllocError> {
    id.split('-')
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| corrupt(format!("bad signing stream id {id}")))
}

/// One stream entry (sealed) as a clear [`SigningEntry`]; `family` when the entry does
/// not name it (the family's own stream).
fn entry(
    sealer: &Sealer,
    id: &StreamId,
    family: Option<&FamilyId>,
) -> Result<SigningEntry, AllocError> {
    let field = |name: &str| -> Result<String, AllocError> {
        reply::text(id.map.get(name).unwrap_or(&Value::Nil))
            .map_err(|_| corrupt(format!("signing entry {} lacks {name}", id.id)))
    };
    let family = match family {
        Some(f) => f.clone(),
        None => FamilyId::new(field("f")?),
    };
    let at = Millis(
        field("at")?
            .parse()
            .map_err(|_| corrupt("signing entry at"))?,
    );
    let event: SigningEvent = serde_json::from_str(&field("e")?)
        .map_err(|e| corrupt(format!("signing entry {}: {e}", id.id)))?;
    sealer.open_entry(SigningEntry {
        seq: seq_of(&id.id)?,
        at,
        family,
        event,
    })
}

/// The references an event makes the batch's: (face session, order number).
fn references(e: &SigningEvent) -> (&str, &str) {
    match e {
        SigningEvent::FaceStarted { provider_session } => (provider_session, ""),
        SigningEvent::DepositOrdered { out_trade_no, .. } => ("", out_trade_no),
        _ => ("", ""),
    }
}

/// What a decision made of a snapshot.
type Decision = Result<(Vec<SigningEvent>, Option<UnitId>), Rejection>;

impl RedisEngine {
    fn sealer(&self) -> Result<&Sealer, AllocError> {
        self.sealer.as_ref().ok_or(AllocError::SigningDisabled)
    }

    async fn snapshot(
        &self,
        k: &BatchKeys,
        family: &FamilyId,
        field: &str,
    ) -> Result<Snapshot, AllocError> {
        let sealer = self.sealer()?;
        let mut inv = scripts::SIGNING_READ.prepare_invoke();
        inv.key(k.meta())
            .key(k.signing_replies())
            .key(k.signing_family(family))
            .key(k.signing_heads())
            .key(k.family(family));
        inv.arg(self.now_arg()).arg(family.as_str()).arg(field);
        let items = reply::array(inv.invoke_async(&mut self.conn()).await?)?;
        let mut it = items.into_iter();
        let mut next = || it.next().ok_or_else(|| corrupt("short signing read"));
        let tag = reply::text(&next()?)?;
        if tag != "ok" {
            let code = reply::text(&next()?)?;
            return Err(refusal(&code).into());
        }
        let now = Millis(reply::int(&next()?)?);
        let prior = reply::text(&next()?)?;
        let head = reply::text(&next()?)?;
        let range = StreamRangeReply::from_redis_value(&next()?)?;
        let entries = range
            .ids
            .iter()
            .map(|id| entry(sealer, id, Some(family)))
            .collect::<Result<Vec<_>, _>>()?;
        let fields = reply::pairs(next()?)?.into_iter().collect();
        Ok(Snapshot {
            now,
            prior,
            head,
            entries,
            fields,
        })
    }

    /// Reads, decides with `decide`, compare-and-appends; again while another change
    /// on the family won the race. `field` keys the request's reply ('' = unkeyed).
    async fn change(
        &self,
        batch: &BatchId,
        family: &FamilyId,
        field: &str,
        decide: impl Fn(&SigningBook, &Snapshot) -> Decision,
    ) -> Result<SigningAnswer, AllocError> {
        let sealer = self.sealer()?;
        let k = self.keys(batch);
        for _ in 0..CAS_RETRIES {
            let snap = self.snapshot(&k, family, field).await?;
            if !snap.prior.is_empty() {
                return prior_answer(&snap, family);
            }
            let mut book = family_book(&snap.entries);
            let (events, unit, reply_text, refused) = match decide(&book, &snap) {
                Ok((events, unit)) => {
                    let ok = (!field.is_empty()).then(|| format!("ok\n{family}"));
                    (events, unit, ok, None)
                }
                Err(r) if !field.is_empty() && remember_refusal(&r) => (
                    Vec::new(),
                    None,
                    Some(format!("err\n{}", json(&r)?)),
                    Some(r),
                ),
                Err(r) => return Ok(Err(r)),
            };
            if events.is_empty() && reply_text.is_none() {
                return Ok(match refused {
                    Some(r) => Err(r),
                    None => view_of(&book, family, snap.now),
                });
            }
            let mut inv = scripts::SIGNING_APPEND.prepare_invoke();
            inv.key(k.meta())
                .key(k.signing_seq())
                .key(k.signing())
                .key(k.signing_family(family))
                .key(k.signing_heads())
                .key(k.signing_orders())
                .key(k.signing_faces())
                .key(k.signing_replies())
                .key(k.family(family));
            inv.arg(family.as_str())
                .arg(&snap.head)
                .arg(snap.now.0)
                .arg(field)
                .arg(reply_text.as_deref().unwrap_or(""))
                .arg(unit.as_ref().map_or("", |u| u.as_str()))
                .arg(events.len());
            for e in &events {
                let sealed = sealer.seal_entry(&SigningEntry {
                    seq: 0,
                    at: snap.now,
                    family: family.clone(),
                    event: e.clone(),
                });
                let (face, order) = references(e);
                inv.arg(json(&sealed.event)?).arg(face).arg(order);
            }
            let items = reply::array(self.write(&inv).await?)?;
            let tag = items
                .first()
                .map(reply::text)
                .transpose()?
                .unwrap_or_default();
            match tag.as_str() {
                "ok" => {
                    if let Some(r) = refused {
                        return Ok(Err(r));
                    }
                    let last = items.get(1).map(reply::int).transpose()?.unwrap_or(0) as u64;
                    let first = last + 1 - events.len() as u64;
                    for (event, seq) in events.into_iter().zip(first..) {
                        book.apply(&SigningEntry {
                            seq,
                            at: snap.now,
                            family: family.clone(),
                            event,
                        });
                    }
                    return Ok(view_of(&book, family, snap.now));
                }
                "replied" | "conflict" => continue,
                "err" => {
                    let code = items
                        .get(1)
                        .map(reply::text)
                        .transpose()?
                        .unwrap_or_default();
                    let r = refusal(&code);
                    if r.code == ErrorCode::UnknownBatch {
                        return Err(r.into());
                    }
                    return Ok(Err(r));
                }
                other => return Err(corrupt(format!("signing append answered {other:?}"))),
            }
        }
        Err(AllocError::Contended(format!(
            "signing of {family} in {batch} kept changing"
        )))
    }

    /// Every entry of the batch's signing log after `after`, at most `limit`.
    async fn signing_range(
        &self,
        batch: &BatchId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<SigningEntry>, AllocError> {
        let sealer = self.sealer()?;
        let k = self.keys(batch);
        let mut out = Vec::new();
        let mut from = after;
        while out.len() < limit {
            let want = (limit - out.len()).min(RANGE_CHUNK);
            let range: StreamRangeReply = redis::cmd("XRANGE")
                .arg(k.signing())
                .arg(format!("{}-0", from.saturating_add(1)))
                .arg("+")
                .arg("COUNT")
                .arg(want)
                .query_async(&mut self.conn())
                .await?;
            let n = range.ids.len();
            for id in &range.ids {
                let e = entry(sealer, id, None)?;
                from = e.seq;
                out.push(e);
            }
            if n < want {
                break;
            }
        }
        if out.is_empty() {
            let exists: bool = self.conn().exists(k.meta()).await?;
            if !exists {
                return Err(ErrorCode::UnknownBatch.into());
            }
        }
        Ok(out)
    }
}

/// A refusal code as a script wrote it.
fn refusal(code: &str) -> Rejection {
    let code: ErrorCode = serde_json::from_value(serde_json::Value::String(code.to_owned()))
        .unwrap_or(ErrorCode::Internal);
    Rejection::new(code)
}

fn view_of(book: &SigningBook, family: &FamilyId, now: Millis) -> SigningAnswer {
    book.record(family)
        .map(|r| SigningView::of(r, now))
        .ok_or_else(|| Rejection::new(ErrorCode::NotSelected))
}

/// The answer a stored reply gives again: an ok shows the view of now.
fn prior_answer(snap: &Snapshot, family: &FamilyId) -> Result<SigningAnswer, AllocError> {
    if let Some(json) = snap.prior.strip_prefix("err\n") {
        let r: Rejection =
            serde_json::from_str(json).map_err(|e| corrupt(format!("stored refusal: {e}")))?;
        return Ok(Err(r));
    }
    Ok(view_of(&family_book(&snap.entries), family, snap.now))
}

#[async_trait::async_trait]
impl SigningStore for RedisEngine {
    async fn open_signing(
        &self,
        batch: &BatchId,
        family: &FamilyId,
        applicant: &str,
        deposit_fen: u64,
    ) -> Result<SigningAnswer, AllocError> {
        let c = self.current(batch).await?;
        self.change(batch, family, "", |book, snap| {
            // hub's order (SigningBook::decide_open): unknown family, already open,
            // then the outcome.
            if !snap.fields.contains_key("rank") {
                return Err(ErrorCode::UnknownFamily.into());
            }
            if book.record(family).is_some() {
                return Ok((vec![], None));
            }
            // A family hash the selection scripts wrote always parses; if one does not,
            // refuse as `internal` rather than open on a guess.
            let state = reply::family_state(&snap.fields).map_err(|_| ErrorCode::Internal)?;
            let outcome = state.outcome.as_ref();
            let unit = outcome
                .and_then(|o| o.unit())
                .and_then(|u| c.batch.unit(u))
                .ok_or(Rejection::new(ErrorCode::NotSelected))?;
            let opened = SigningRecord::decide_open(outcome, unit, applicant, deposit_fen)?;
            Ok((vec![opened], Some(unit.id.clone())))
        })
        .await
    }

    async fn sign(
        &self,
        batch: &BatchId,
        family: &FamilyId,
        actor: &Actor,
        req_id: &str,
        action: SigningAction,
    ) -> Result<SigningAnswer, AllocError> {
        let field = format!("{}\n{req_id}", actor_key(actor));
        self.change(batch, family, &field, |book, snap| {
            Ok((book.decide(actor, family, &action, snap.now)?, None))
        })
        .await
    }

    async fn signing_callback(
        &self,
        batch: &BatchId,
        actor: &Actor,
        req_id: &str,
        action: SigningAction,
    ) -> Result<CallbackAnswer, AllocError> {
        self.sealer()?;
        let k = self.keys(batch);
        let field = format!("{}\n{req_id}", actor_key(actor));
        let (lookup, reference) = match &action {
            SigningAction::FaceResult {
                provider_session, ..
            } => (k.signing_faces(), provider_session.as_str()),
            SigningAction::DepositPaid { out_trade_no, .. } => {
                (k.signing_orders(), out_trade_no.as_str())
            }
            _ => (k.signing_faces(), ""),
        };
        // The family first: references, once given, never move to another family.
        let (exists, prior, owner): (bool, Option<String>, Option<String>) = redis::pipe()
            .exists(k.meta())
            .hget(k.signing_replies(), &field)
            .hget(&lookup, reference)
            .query_async(&mut self.conn())
            .await?;
        if !exists {
            return Err(ErrorCode::UnknownBatch.into());
        }
        let family = match (prior, owner) {
            (Some(p), _) if p.starts_with("err\n") => {
                let r: Rejection = serde_json::from_str(&p[4..])
                    .map_err(|e| corrupt(format!("stored refusal: {e}")))?;
                return Ok(Err(r));
            }
            (Some(p), _) => FamilyId::new(p.strip_prefix("ok\n").unwrap_or(&p)),
            (None, Some(f)) => FamilyId::new(f),
            (None, None) => {
                // hub says why (forbidden, or a reference the batch never issued).
                let now = crate::Allocator::now(self).await?;
                return Ok(
                    match SigningBook::new().decide_callback(actor, &action, now) {
                        Err(r) => Err(r),
                        Ok(_) => Err(ErrorCode::Internal.into()),
                    },
                );
            }
        };
        let answer = self
            .change(batch, &family, &field, |book, snap| {
                Ok((book.decide_callback(actor, &action, snap.now)?.1, None))
            })
            .await?;
        Ok(answer.map(|view| (family, view)))
    }

    async fn signing(
        &self,
        batch: &BatchId,
        family: &FamilyId,
    ) -> Result<Option<SigningRecord>, AllocError> {
        let snap = self.snapshot(&self.keys(batch), family, "").await?;
        if snap.entries.is_empty() {
            return Ok(None);
        }
        SigningRecord::replay(&snap.entries)
            .map(Some)
            .map_err(|e| corrupt(format!("signing of {family}: {e}")))
    }

    async fn signing_view(
        &self,
        batch: &BatchId,
        family: &FamilyId,
    ) -> Result<Option<SigningView>, AllocError> {
        let snap = self.snapshot(&self.keys(batch), family, "").await?;
        Ok(family_book(&snap.entries)
            .record(family)
            .map(|r| SigningView::of(r, snap.now)))
    }

    async fn signing_queue(
        &self,
        batch: &BatchId,
        filter: SigningFilter,
    ) -> Result<Vec<SigningRecord>, AllocError> {
        // The whole log, replayed: the console's lists are few and the log of a batch
        // is thousands of entries, not millions.
        let entries = self.signing_range(batch, 0, usize::MAX).await?;
        let book = SigningBook::replay(&entries)
            .map_err(|e| corrupt(format!("signing log of {batch}: {e}")))?;
        Ok(book
            .queue(|s| filter.matches(s))
            .into_iter()
            .cloned()
            .collect())
    }

    async fn signing_events(
        &self,
        batch: &BatchId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<SigningEntry>, AllocError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.signing_range(batch, after, limit).await
    }
}
