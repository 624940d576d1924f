//! Signing in the embedded engine: per batch a [`SigningBook`] and its own journal,
//! `<batch>.signing` next to the selection's `<batch>.journal`.
//!
//! The same discipline as the selection (see [`super::engine`]): decisions are made
//! and applied at once on the *head* book under the batch's signing lock, so two
//! concurrent actions on one family see each other and the log stays gapless; entries
//! reach the *durable* book (which every query and reply reads) only once the journal
//! writer has synced them (group commit, one `sync_data` per group). The framing and
//! the torn-tail rule are the selection journal's ([`super::journal`]), with records
//! of their own ([`SigningFrame`]); the selection journal is not touched.
//!
//! Personal data: each entry is sealed ([`Sealer::seal_entry`]) just before it is
//! framed, so the file never holds a card number or phone in clear; replay opens them.
//!
//! Opening reads the family's outcome from the *durable* selection: `Selected` is final
//! and already on disk, so a signing can never be opened on a unit a crash could
//! take back.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};
use xuanfang_hub::signing::{Actor, SigningEvent};
use xuanfang_hub::{
    BatchId, FamilyId, Millis, Rejection, SigningAction, SigningBook, SigningEntry, SigningRecord,
};

use super::engine::EmbeddedEngine;
use super::journal::{self, Journal, JournalOptions, Sink, Stats};
use crate::contract::AllocError;
use crate::sealing::Sealer;
use crate::signing_contract::{
    actor_key, remember_refusal, CallbackAnswer, SigningAnswer, SigningFilter, SigningStore,
    SigningView,
};

/// File name suffix of a signing journal (not [`journal::EXTENSION`], so the selection's
/// recovery never mistakes one for a batch).
pub const SIGNING_EXTENSION: &str = "signing";

/// The signing journal's file name for `batch`: the selection journal's, with its own
/// suffix.
pub fn signing_file_name(batch: &BatchId) -> String {
    let name = journal::file_name(batch);
    let stem = name
        .strip_suffix(journal::EXTENSION)
        .unwrap_or(name.as_str());
    format!("{stem}{SIGNING_EXTENSION}")
}

/// One frame's payload in a signing journal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum SigningFrame {
    /// First record of every file.
    Began { batch: BatchId },
    /// The entries of one decision (sealed), and the request it answered, so the
    /// request id answers ok again after a restart.
    Changed {
        entries: Vec<SigningEntry>,
        #[serde(default)]
        req: Option<SigningReq>,
    },
}

/// A request that was answered ok.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningReq {
    /// [`actor_key`] of who asked.
    pub actor: String,
    pub req_id: String,
    /// The family it was for (a callback names none; the engine found it).
    pub family: FamilyId,
}

/// A remembered answer and the log position it was decided at.
#[derive(Clone, Debug)]
struct Reply {
    seq: u64,
    answer: Result<FamilyId, Rejection>,
}

struct Head {
    book: SigningBook,
    replies: HashMap<(String, String), Reply>,
}

#[derive(Clone, Copy, Debug)]
struct Mark {
    seq: u64,
    broken: bool,
}

struct Durable {
    state: Mutex<DurableState>,
    mark: watch::Sender<Mark>,
}

struct DurableState {
    book: SigningBook,
    /// Every entry, clear, `entries[i].seq == i + 1`.
    entries: Vec<SigningEntry>,
}

impl Sink<SigningEntry> for Arc<Durable> {
    fn durable(&self, entries: Vec<SigningEntry>) {
        let mut st = self.state.lock();
        for e in &entries {
            st.book.apply(e);
        }
        let seq = st.book.seq();
        st.entries.extend(entries);
        drop(st);
        self.mark.send_modify(|m| m.seq = seq);
    }

    fn broken(&self) {
        self.mark.send_modify(|m| m.broken = true);
    }
}

enum Wait {
    Record(oneshot::Receiver<Result<(), io::Error>>),
    Seq(u64),
}

/// The signing of one batch.
pub(super) struct SigningSlot {
    sealer: Sealer,
    head: Mutex<Head>,
    durable: Arc<Durable>,
    journal: Option<Journal<SigningEntry>>,
}

fn new_durable(book: SigningBook, entries: Vec<SigningEntry>) -> Arc<Durable> {
    let (mark, _) = watch::channel(Mark {
        seq: book.seq(),
        broken: false,
    });
    Arc::new(Durable {
        state: Mutex::new(DurableState { book, entries }),
        mark,
    })
}

impl SigningSlot {
    /// A batch's signing kept in memory only.
    pub(super) fn in_memory(sealer: Sealer) -> Self {
        Self {
            sealer,
            head: Mutex::new(Head {
                book: SigningBook::new(),
                replies: HashMap::new(),
            }),
            durable: new_durable(SigningBook::new(), Vec::new()),
            journal: None,
        }
    }

    /// Replays `batch`'s signing journal in `dir`, or creates it (durably) when there is
    /// none yet or its first frame never became whole. Blocking: call off the runtime
    /// or at open.
    pub(super) fn open(
        dir: &Path,
        batch: &BatchId,
        sealer: Sealer,
        options: &JournalOptions,
    ) -> Result<Self, AllocError> {
        let name = signing_file_name(batch);
        let path = dir.join(&name);
        let mut entries = Vec::new();
        let mut replies = HashMap::new();
        let file = if path.exists() {
            let contents = journal::read_records::<SigningFrame>(&path)?;
            let mut records = contents.records.into_iter();
            match records.next() {
                None => {
                    tracing::warn!(path = %path.display(), "signing journal holds no whole record; recreating it");
                    std::fs::remove_file(&path)?;
                    journal::create_named(
                        dir,
                        &name,
                        &SigningFrame::Began {
                            batch: batch.clone(),
                        },
                    )?
                    .1
                }
                Some(SigningFrame::Began { batch: b }) if &b == batch => {
                    for record in records {
                        let SigningFrame::Changed { entries: es, req } = record else {
                            return Err(AllocError::Corrupt(format!(
                                "{} has a second began record",
                                path.display()
                            )));
                        };
                        for e in es {
                            entries.push(sealer.open_entry(e)?);
                        }
                        if let Some(SigningReq {
                            actor,
                            req_id,
                            family,
                        }) = req
                        {
                            let seq = entries.last().map_or(0, |e: &SigningEntry| e.seq);
                            let reply = Reply {
                                seq,
                                answer: Ok(family),
                            };
                            replies.insert((actor, req_id), reply);
                        }
                    }
                    journal::open_append(&path)?
                }
                Some(_) => {
                    return Err(AllocError::Corrupt(format!(
                        "{} does not begin with this batch",
                        path.display()
                    )))
                }
            }
        } else {
            journal::create_named(
                dir,
                &name,
                &SigningFrame::Began {
                    batch: batch.clone(),
                },
            )?
            .1
        };
        let book = SigningBook::replay(&entries)
            .map_err(|e| AllocError::Corrupt(format!("{}: {e}", path.display())))?;
        let durable = new_durable(book.clone(), entries);
        let journal = Journal::start(
            file,
            name,
            // Counted apart: the engine's journal stats are the selection's.
            Arc::new(Stats::default()),
            Box::new(durable.clone()),
            options.sync.clone(),
        )?;
        Ok(Self {
            sealer,
            head: Mutex::new(Head { book, replies }),
            durable,
            journal: Some(journal),
        })
    }

    fn check_writable(&self) -> Result<(), AllocError> {
        if self.durable.mark.borrow().broken {
            return Err(AllocError::Journal(io::Error::other(
                "the signing journal of this batch failed; restart to recover",
            )));
        }
        Ok(())
    }

    /// Queues `entries` (sealed) with the request they answer, then applies them to the
    /// head. Call with the head lock held, so the log order is the decision order.
    fn commit(
        &self,
        head: &mut Head,
        entries: Vec<SigningEntry>,
        req: Option<SigningReq>,
    ) -> Result<Wait, AllocError> {
        if entries.is_empty() && req.is_none() {
            return Ok(Wait::Seq(head.book.seq()));
        }
        let end = entries.last().map_or(head.book.seq(), |e| e.seq);
        let wait = match &self.journal {
            Some(journal) => {
                let sealed = entries.iter().map(|e| self.sealer.seal_entry(e)).collect();
                let record = SigningFrame::Changed {
                    entries: sealed,
                    req,
                };
                Wait::Record(journal.append(&record, entries.clone())?)
            }
            None => Wait::Seq(end),
        };
        for e in &entries {
            head.book.apply(e);
        }
        if self.journal.is_none() && !entries.is_empty() {
            self.durable.durable(entries);
        }
        Ok(wait)
    }

    async fn settle(&self, wait: Wait) -> Result<(), AllocError> {
        match wait {
            Wait::Record(rx) => match rx.await {
                Ok(result) => Ok(result?),
                Err(_) => Err(io::Error::other("the signing journal writer stopped").into()),
            },
            Wait::Seq(seq) => {
                let mut rx = self.durable.mark.subscribe();
                let mark = *rx
                    .wait_for(|m| m.seq >= seq || m.broken)
                    .await
                    .map_err(|_| io::Error::other("the signing journal writer stopped"))?;
                if mark.seq < seq {
                    return Err(io::Error::other("the signing journal of this batch failed").into());
                }
                Ok(())
            }
        }
    }

    /// Decides with `decide` on the head book and commits, idempotent per `key`;
    /// answers once everything it was decided against is durable.
    async fn change(
        &self,
        key: Option<(String, String)>,
        now: Millis,
        decide: impl FnOnce(&SigningBook) -> Result<(FamilyId, Vec<SigningEvent>), Rejection>,
    ) -> Result<Result<FamilyId, Rejection>, AllocError> {
        let (wait, answer) = {
            let mut head = self.head.lock();
            self.check_writable()?;
            if let Some(r) = key.as_ref().and_then(|k| head.replies.get(k)) {
                (Wait::Seq(r.seq), r.answer.clone())
            } else {
                match decide(&head.book) {
                    Err(rejection) => {
                        let seq = head.book.seq();
                        if let Some(k) = key.filter(|_| remember_refusal(&rejection)) {
                            let reply = Reply {
                                seq,
                                answer: Err(rejection.clone()),
                            };
                            head.replies.insert(k, reply);
                        }
                        (Wait::Seq(seq), Err(rejection))
                    }
                    Ok((family, events)) => {
                        let entries = head.book.entries(&family, events, now);
                        let req = key.as_ref().map(|(actor, req_id)| SigningReq {
                            actor: actor.clone(),
                            req_id: req_id.clone(),
                            family: family.clone(),
                        });
                        let wait = self.commit(&mut head, entries, req)?;
                        if let Some(k) = key {
                            let reply = Reply {
                                seq: head.book.seq(),
                                answer: Ok(family.clone()),
                            };
                            head.replies.insert(k, reply);
                        }
                        (wait, Ok(family))
                    }
                }
            }
        };
        self.settle(wait).await?;
        Ok(answer)
    }

    fn read<R>(&self, f: impl FnOnce(&DurableState) -> R) -> R {
        f(&self.durable.state.lock())
    }

    fn view(&self, family: &FamilyId, now: Millis) -> Result<SigningView, AllocError> {
        self.read(|st| st.book.record(family).map(|r| SigningView::of(r, now)))
            .ok_or_else(|| AllocError::Corrupt(format!("signing of {family} vanished")))
    }
}

impl EmbeddedEngine {
    /// The batch, if this engine stores signing at all.
    fn signing_slot(&self, batch: &BatchId) -> Result<Arc<super::engine::Slot>, AllocError> {
        let slot = self.slot(batch)?;
        if slot.signing.is_none() {
            return Err(AllocError::SigningDisabled);
        }
        Ok(slot)
    }
}

fn signing_of(slot: &super::engine::Slot) -> &SigningSlot {
    slot.signing
        .as_ref()
        .expect("checked by EmbeddedEngine::signing_slot")
}

#[async_trait]
impl SigningStore for EmbeddedEngine {
    async fn open_signing(
        &self,
        batch: &BatchId,
        family: &FamilyId,
        applicant: &str,
        deposit_fen: u64,
    ) -> Result<SigningAnswer, AllocError> {
        let slot = self.signing_slot(batch)?;
        let s = signing_of(&slot);
        let now = self.clock.now();
        let answer = s
            .change(None, now, |book| {
                // The durable selection: `Selected` is final and on disk.
                let st = slot.durable.state.lock();
                let events = book.decide_open(&st.sel, family, applicant, deposit_fen)?;
                Ok((family.clone(), events))
            })
            .await?;
        Ok(match answer {
            Ok(f) => Ok(s.view(&f, self.clock.now())?),
            Err(r) => Err(r),
        })
    }

    async fn sign(
        &self,
        batch: &BatchId,
        family: &FamilyId,
        actor: &Actor,
        req_id: &str,
        action: SigningAction,
    ) -> Result<SigningAnswer, AllocError> {
        let slot = self.signing_slot(batch)?;
        let s = signing_of(&slot);
        let now = self.clock.now();
        let key = (actor_key(actor), req_id.to_owned());
        let answer = s
            .change(Some(key), now, |book| {
                let events = book.decide(actor, family, &action, now)?;
                Ok((family.clone(), events))
            })
            .await?;
        Ok(match answer {
            Ok(f) => Ok(s.view(&f, self.clock.now())?),
            Err(r) => Err(r),
        })
    }

    async fn signing_callback(
        &self,
        batch: &BatchId,
        actor: &Actor,
        req_id: &str,
        action: SigningAction,
    ) -> Result<CallbackAnswer, AllocError> {
        let slot = self.signing_slot(batch)?;
        let s = signing_of(&slot);
        let now = self.clock.now();
        let key = (actor_key(actor), req_id.to_owned());
        let answer = s
            .change(Some(key), now, |book| {
                book.decide_callback(actor, &action, now)
            })
            .await?;
        Ok(match answer {
            Ok(f) => {
                let view = s.view(&f, self.clock.now())?;
                Ok((f, view))
            }
            Err(r) => Err(r),
        })
    }

    async fn signing(
        &self,
        batch: &BatchId,
        family: &FamilyId,
    ) -> Result<Option<SigningRecord>, AllocError> {
        let slot = self.signing_slot(batch)?;
        Ok(signing_of(&slot).read(|st| st.book.record(family).cloned()))
    }

    async fn signing_view(
        &self,
        batch: &BatchId,
        family: &FamilyId,
    ) -> Result<Option<SigningView>, AllocError> {
        let slot = self.signing_slot(batch)?;
        let now = self.clock.now();
        Ok(signing_of(&slot).read(|st| st.book.record(family).map(|r| SigningView::of(r, now))))
    }

    async fn signing_queue(
        &self,
        batch: &BatchId,
        filter: SigningFilter,
    ) -> Result<Vec<SigningRecord>, AllocError> {
        let slot = self.signing_slot(batch)?;
        Ok(signing_of(&slot).read(|st| {
            st.book
                .queue(|s| filter.matches(s))
                .into_iter()
                .cloned()
                .collect()
        }))
    }

    async fn signing_events(
        &self,
        batch: &BatchId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<SigningEntry>, AllocError> {
        let slot = self.signing_slot(batch)?;
        let from = usize::try_from(after).unwrap_or(usize::MAX);
        Ok(
            signing_of(&slot)
                .read(|st| st.entries.iter().skip(from).take(limit).cloned().collect()),
        )
    }
}
