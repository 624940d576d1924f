//! Key names. Every key of a batch carries the hash tag `{b:<batch>}`, so one batch
//! lives in one Redis Cluster slot and each script may touch all of its keys.

use xuanfang_hub::{BatchId, FamilyId};

/// The keys of one batch, under an optional namespace (tests give each engine its own).
#[derive(Clone, Debug)]
pub struct BatchKeys {
    prefix: String,
}

impl BatchKeys {
    /// Keys of `batch` under `namespace` (empty in production).
    pub fn new(namespace: &str, batch: &BatchId) -> Self {
        Self {
            prefix: format!("{namespace}{{b:{batch}}}"),
        }
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    /// Hash: `gen` (bumped when the batch changes), `epoch`, `preselect_start`,
    /// `preselect_end`, `load` (the token of the load that published it; family hashes
    /// carry the same). Stores written before [`Self::supplementary`] existed may also
    /// hold `batch` (the whole batch JSON with its supplementary sessions); it then stands
    /// in for [`Self::loaded`].
    pub fn meta(&self) -> String {
        self.key("meta")
    }
    /// List: the JSON of each published supplementary session, in publishing order. The
    /// batch is [`Self::loaded`] (or meta's `batch`) with these sessions appended, so a
    /// publish writes one session, not the whole batch again (read with meta in one
    /// transaction, so the two agree).
    pub fn supplementary(&self) -> String {
        self.key("supp")
    }
    /// The last event's seq.
    pub fn seq(&self) -> String {
        self.key("seq")
    }
    /// Stream of events, ID `<seq>-0`, fields `at` and `e` (EventKind JSON) — but entry
    /// 1 (`batch_loaded`) has `at` and `b`: the name of the key holding the batch's JSON
    /// ([`Self::loaded`]), which the load staged in slices rather than copy in one call.
    pub fn events(&self) -> String {
        self.key("events")
    }
    /// String: the batch's JSON as loaded (never changed afterwards): the batch of the
    /// `batch_loaded` event, and the batch itself until meta has `batch`.
    pub fn loaded(&self) -> String {
        self.key("loaded")
    }
    /// String: the batch's JSON of the load with `token`, written in slices and renamed
    /// to [`Self::loaded`] when the load is published.
    pub fn staged_loaded(&self, token: &str) -> String {
        self.key(&format!("loaded~{token}"))
    }
    /// Hash unit -> holder JSON (hub `Holder`).
    pub fn taken(&self) -> String {
        self.key("taken")
    }
    /// Hash unit -> layout: which units exist and what they are.
    pub fn units(&self) -> String {
        self.key("units")
    }
    /// String: the token of the chunked load of this id under way (`load_begin.lua`),
    /// expiring unless renewed.
    pub fn loading(&self) -> String {
        self.key("loading")
    }
    /// Hash unit -> layout of the load with `token`, renamed to [`Self::units`] when the
    /// load is published.
    pub fn staged_units(&self, token: &str) -> String {
        self.key(&format!("units~{token}"))
    }
    /// Hash session -> `{deadline, size}`.
    pub fn sessions(&self) -> String {
        self.key("sessions")
    }
    /// Hash session -> seq of its `session_closed` event.
    pub fn closed(&self) -> String {
        self.key("closed")
    }
    /// Hash session -> position of the first family auto-confirm has not passed.
    pub fn cursor(&self) -> String {
        self.key("cursor")
    }
    /// Hash of one family's most recent answers, for idempotent retries (at most
    /// [`crate::REPLIES_PER_FAMILY`]): `r<req_id>` -> the answer, `#` -> answers stored
    /// so far, `#<n mod K>` -> the req_id in that slot of the ring.
    pub fn replies(&self, family: &FamilyId) -> String {
        self.key(&format!("rep:{family}"))
    }
    /// Signing (网上签约): the last entry's seq of the batch's signing log.
    pub fn signing_seq(&self) -> String {
        self.key("signing:seq")
    }
    /// Stream of the batch's signing log, ID `<seq>-0`, fields `f` (family), `at`, `e`
    /// (SigningEvent JSON, card number and phone sealed).
    pub fn signing(&self) -> String {
        self.key("signing")
    }
    /// Stream of one family's signing entries (the same IDs and `at`, `e`): what a
    /// decision on that family replays.
    pub fn signing_family(&self, family: &FamilyId) -> String {
        self.key(&format!("signing:fam:{family}"))
    }
    /// Hash family -> seq of its last signing entry: the compare of compare-and-append.
    pub fn signing_heads(&self) -> String {
        self.key("signing:heads")
    }
    /// Hash order number -> family, for payment notifications.
    pub fn signing_orders(&self) -> String {
        self.key("signing:orders")
    }
    /// Hash face session -> family, for face verdicts.
    pub fn signing_faces(&self) -> String {
        self.key("signing:faces")
    }
    /// Hash "<actor>\n<req_id>" -> `ok\n<family>` or `err\n<Rejection JSON>`.
    pub fn signing_replies(&self) -> String {
        self.key("signing:replies")
    }
    /// Hash of one family's static fields and changing state.
    pub fn family(&self, family: &FamilyId) -> String {
        self.key(&format!("fam:{family}"))
    }
}

/// The set of batch ids. Outside any batch's slot, so it is written after the load
/// script succeeds rather than inside it.
pub fn batches(namespace: &str) -> String {
    format!("{namespace}xuanfang:batches")
}

/// Hash refund number -> the gateway's record of that refund (JSON): the deployment's
/// refund ledger (`refunds.rs`). Outside any batch's slot: a refund notification names
/// only the refund number.
pub fn refunds(namespace: &str) -> String {
    format!("{namespace}xuanfang:refunds")
}

/// The Pub/Sub channel published to before `WAIT` in Sentinel mode (see `durable.rs`):
/// nobody subscribes; the message only moves the connection's replication offset.
pub fn replicated(namespace: &str) -> String {
    format!("{namespace}xuanfang:replicated")
}
