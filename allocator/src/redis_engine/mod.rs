//! The production engine: Redis, one Lua script per operation.
//!
//! Each operation is one script over the keys of one batch (hash tag `{b:<batch>}`,
//! see [`keys`]), which checks everything first, then writes the state and appends
//! the event to the batch's stream in the same script: state and event commit
//! together, and scripts run one at a time, so there is no WATCH/MULTI and no lost
//! race. The scripts mirror hub `Selection::decide` check for check (`allocator/lua/`);
//! the stream alone rebuilds the state with `Selection::replay`.
//!
//! Signing (网上签约, [`SigningStore`](crate::SigningStore)) is the exception, on
//! purpose: hub decides in Rust on an atomic snapshot and one script compare-and-appends
//! the events per family (see `signing.rs` for why).
//!
//! The refund ledger ([`refunds`]) is the gateway's, kept here so that every gateway on
//! this Redis shares it: records the engine stores without reading, written by a
//! compare-and-set.
//!
//! Rust's part: derive keys, pass arguments, and turn what a script read back into hub
//! views. The static batch is cached per engine, keyed by a generation that only a
//! published supplementary session bumps.

mod barrier;
pub mod conn;
mod durable;
pub mod family_hash;
mod follow;
pub mod keys;
pub mod refunds;
mod reply;
mod scripts;
pub mod sentinel;
mod signing;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::RwLock;
use redis::{AsyncCommands, Client};
use serde::Serialize;
use xuanfang_hub::protocol::{Catalog, FamilyView};
use xuanfang_hub::selection::Holder;
use xuanfang_hub::{
    rules, supplementary, views, Action, Batch, BatchId, Clock, ErrorCode, Event, FamilyId, Millis,
    Rejection, Session, SessionId, UnitId,
};

use crate::contract::{AllocError, Allocator, Answer, BoardState, CloseStep, FamilyRecord};
use crate::sealing::{Sealer, SigningOptions};
use conn::{Conn, Target};
use durable::Writer;
use follow::Follower;
use keys::BatchKeys;
use reply::{FamilyRead, Reply};

/// The generated first lines of every script (for tools that name scripts by sha).
pub use scripts::prelude as script_prelude;

/// How the engine talks to Redis. The defaults are for selection day; see
/// `docs/operations.md` (Redis) for why.
#[derive(Clone)]
pub struct RedisOptions {
    /// Prefix of every key (before the hash tag). Empty in production; tests give
    /// each engine its own so they can share one server.
    pub namespace: String,
    /// How long a command may wait for its reply. Long enough to ride out an fsync
    /// stall under `appendfsync always` (a false timeout would report a committed
    /// confirm as failed; the client's retry with the same req_id is then safe, but
    /// slow). Blocking stream reads add their own wait on top.
    pub response_timeout: Duration,
    /// How long opening a connection may take.
    pub connection_timeout: Duration,
    /// A test clock: when set, scripts use its time instead of Redis `TIME`.
    pub clock: Option<Arc<dyn Clock>>,
    /// Signing's data key; `None`: the engine stores no signing (every
    /// [`SigningStore`](crate::SigningStore) call is [`AllocError::SigningDisabled`]).
    pub signing: Option<SigningOptions>,
    /// Sentinel mode only: how long an acknowledged write waits for a replica (`WAIT 1
    /// <ms>`) before it fails with [`AllocError::NotReplicated`]; zero: no wait (a
    /// failover may then lose the last answers). Must stay below `response_timeout`.
    /// Ignored for a single Redis and a Cluster.
    pub replica_wait: Duration,
}

/// Default of [`RedisOptions::replica_wait`]: a replica on the same LAN acknowledges
/// in about a millisecond; a second means it is gone or far behind.
pub const DEFAULT_REPLICA_WAIT: Duration = Duration::from_secs(1);

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            namespace: String::new(),
            response_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(2),
            clock: None,
            signing: None,
            replica_wait: DEFAULT_REPLICA_WAIT,
        }
    }
}

/// The static batch as this engine last read it.
struct Cached {
    gen: u64,
    epoch: u64,
    batch: Batch,
    families: HashMap<FamilyId, usize>,
}

impl Cached {
    fn new(gen: u64, epoch: u64, batch: Batch) -> Self {
        let families = batch
            .families
            .iter()
            .enumerate()
            .map(|(i, f)| (f.id.clone(), i))
            .collect();
        Self {
            gen,
            epoch,
            batch,
            families,
        }
    }
}

/// The Redis engine. Cheap to share behind an `Arc`; every gateway instance holds one
/// over the same Redis.
pub struct RedisEngine {
    /// Several multiplexed connections, used in turn: Redis reads at most 16 KiB from
    /// each client per event-loop turn and, with `appendfsync always`, fsyncs once per
    /// turn before any reply goes out. A burst queued on few connections is therefore
    /// cut into many turns, each paying an fsync (docs/benchmarks.md, "Where the burst's
    /// time went"); spread over more connections, one turn takes in more of it.
    conns: Vec<Conn>,
    next_conn: std::sync::atomic::AtomicUsize,
    follower: Follower,
    clock: Option<Arc<dyn Clock>>,
    /// Seals signing's personal data; `None` without [`RedisOptions::signing`].
    sealer: Option<Sealer>,
    namespace: String,
    cache: RwLock<HashMap<BatchId, Arc<Cached>>>,
    /// The replication barriers (see [`durable`]); `None` without a replica wait.
    barriers: Option<Arc<barrier::Barriers>>,
}

/// Shared multiplexed connections per engine: 16 × 16 KiB per turn is ~600 family
/// actions (~420 B each), a whole session's start in one or two fsyncs.
const SHARED_CONNECTIONS: usize = 16;

/// How many times a script that found the engine's batch out of date is retried.
const STALE_RETRIES: usize = 3;
/// Families and units written per call of a chunked load: a call of 10,000 families
/// took ~97 ms; slices keep each under ~2 ms (docs/benchmarks.md).
const LOAD_FAMILIES_PER_CALL: usize = 250;
const LOAD_UNITS_PER_CALL: usize = 1000;
/// Bytes of the batch's JSON staged per call: copied whole in the publishing call, the
/// JSON of 10,000 families made that call 15–19 ms (twice: meta and the event).
const LOAD_JSON_BYTES_PER_CALL: usize = 256 * 1024;
/// Lifetime of a load's lock, renewed by each of its calls: a loader that dies mid-way
/// frees the batch id after this long.
const LOAD_LOCK_MS: u64 = 30_000;
/// Families read per pipeline by [`Allocator::results`].
const RESULTS_CHUNK: usize = 500;

fn corrupt(what: impl Into<String>) -> AllocError {
    AllocError::Corrupt(what.into())
}

/// The wire name of a unit-like enum (`"cart"`, `"add"`, `"formal"`...).
fn wire<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

fn json<T: Serialize>(v: &T) -> Result<String, AllocError> {
    serde_json::to_string(v).map_err(|e| corrupt(format!("encode: {e}")))
}

impl RedisEngine {
    /// Connects to `url` with the default options: `redis://127.0.0.1:6379` for one
    /// Redis, or several comma-separated seed URLs for a Redis Cluster.
    pub async fn open(url: &str) -> Result<Self, AllocError> {
        Self::connect_to(Target::parse(url)?, RedisOptions::default()).await
    }

    /// Connects with an injected clock: scripts get the clock's time as an argument
    /// instead of reading Redis `TIME`. For tests.
    pub async fn with_clock(client: Client, clock: Arc<dyn Clock>) -> Result<Self, AllocError> {
        let options = RedisOptions {
            clock: Some(clock),
            ..RedisOptions::default()
        };
        Self::connect(client, options).await
    }

    /// Connects with explicit options.
    pub async fn connect(client: Client, options: RedisOptions) -> Result<Self, AllocError> {
        Self::connect_to(Target::Single(client), options).await
    }

    /// Connects to a single Redis or a Redis Cluster.
    pub async fn connect_to(target: Target, options: RedisOptions) -> Result<Self, AllocError> {
        let replica_wait = if target.is_sentinel() {
            options.replica_wait
        } else {
            Duration::ZERO
        };
        if !replica_wait.is_zero() && replica_wait >= options.response_timeout {
            return Err(AllocError::Redis(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "the replica wait must be shorter than the response timeout",
                format!(
                    "{} ms >= {} ms",
                    replica_wait.as_millis(),
                    options.response_timeout.as_millis()
                ),
            ))));
        }
        let barriers = (!replica_wait.is_zero()).then(|| {
            Arc::new(barrier::Barriers::new(
                replica_wait,
                keys::replicated(&options.namespace),
                options.response_timeout,
                options.connection_timeout,
            ))
        });
        let mut conns = Vec::with_capacity(SHARED_CONNECTIONS);
        for _ in 0..SHARED_CONNECTIONS {
            conns.push(
                target
                    .shared(options.response_timeout, options.connection_timeout)
                    .await?,
            );
        }
        Ok(Self {
            conns,
            next_conn: std::sync::atomic::AtomicUsize::new(0),
            follower: Follower::new(
                target,
                options.connection_timeout,
                replica_wait,
                keys::replicated(&options.namespace),
            ),
            clock: options.clock,
            sealer: options.signing.as_ref().map(Sealer::new),
            namespace: options.namespace,
            cache: RwLock::new(HashMap::new()),
            barriers,
        })
    }

    /// Stream entries after `after`; in Sentinel mode only once a replica has them.
    async fn replicated_range(
        &self,
        stream: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, AllocError> {
        let mut w = self.writer().await?;
        let events = follow::read_range(&mut w, stream, after, limit).await?;
        if !events.is_empty() {
            w.acknowledged().await?;
        }
        Ok(events)
    }

    /// A connection for a write that is acknowledged (see [`durable`]).
    async fn writer(&self) -> Result<Writer, AllocError> {
        Writer::new(self.conn(), self.barriers.as_ref()).await
    }

    /// Runs a write script and returns its reply once it is safe to answer: in Sentinel
    /// mode, once a replica has it.
    async fn write(&self, inv: &redis::ScriptInvocation<'_>) -> Result<redis::Value, AllocError> {
        let mut w = self.writer().await?;
        let value = w.invoke(inv).await?;
        w.acknowledged().await?;
        Ok(value)
    }

    /// The next shared connection (round robin).
    fn conn(&self) -> Conn {
        let i = self
            .next_conn
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.conns[i % self.conns.len()].clone()
    }

    fn keys(&self, batch: &BatchId) -> BatchKeys {
        BatchKeys::new(&self.namespace, batch)
    }

    /// ARGV `now` of every script: the test clock's time, or -1 for Redis `TIME`.
    fn now_arg(&self) -> String {
        match &self.clock {
            Some(c) => c.now().0.to_string(),
            None => "-1".to_owned(),
        }
    }

    /// The cached batch, read from Redis on first use.
    async fn cached(&self, batch: &BatchId) -> Result<Arc<Cached>, AllocError> {
        if let Some(c) = self.cache.read().get(batch) {
            return Ok(c.clone());
        }
        self.reload(batch).await
    }

    /// The cached batch, reloaded unless it is at least generation `gen`.
    async fn cached_at_least(&self, batch: &BatchId, gen: u64) -> Result<Arc<Cached>, AllocError> {
        let c = self.cached(batch).await?;
        if c.gen >= gen {
            return Ok(c);
        }
        self.reload(batch).await
    }

    /// The cached batch, checked against the generation in Redis now.
    async fn current(&self, batch: &BatchId) -> Result<Arc<Cached>, AllocError> {
        let gen: Option<u64> = self.conn().hget(self.keys(batch).meta(), "gen").await?;
        let gen = gen.ok_or(AllocError::Rejected(ErrorCode::UnknownBatch.into()))?;
        self.cached_at_least(batch, gen).await
    }

    async fn reload(&self, batch: &BatchId) -> Result<Arc<Cached>, AllocError> {
        let k = self.keys(batch);
        let mut inv = scripts::BATCH_READ.prepare_invoke();
        inv.key(k.meta()).key(k.loaded()).key(k.supplementary());
        let payload = match reply::reply(inv.invoke_async(&mut self.conn()).await?)? {
            Reply::Ok(payload) => payload,
            Reply::Refused(r) => return Err(r.into()),
            Reply::Stale => return Err(corrupt("batch_read answered stale")),
        };
        let [gen, epoch, base, supplementary @ ..] = &payload[..] else {
            return Err(corrupt("batch_read reply too short"));
        };
        let (gen, epoch) = (reply::int(gen)? as u64, reply::int(epoch)? as u64);
        let base = reply::text(base)?;
        if base.is_empty() {
            return Err(corrupt("batch meta without its loaded JSON"));
        }
        let mut parsed: Batch =
            serde_json::from_str(&base).map_err(|e| corrupt(format!("stored batch: {e}")))?;
        for s in supplementary {
            let session: Session = serde_json::from_str(&reply::text(s)?)
                .map_err(|e| corrupt(format!("stored supplementary session: {e}")))?;
            parsed.sessions.push(session);
        }
        let c = Arc::new(Cached::new(gen, epoch, parsed));
        let mut cache = self.cache.write();
        // Another task may have loaded a newer generation meanwhile: keep the newest.
        let entry = cache.entry(batch.clone()).or_insert_with(|| c.clone());
        if entry.gen < c.gen {
            *entry = c;
        }
        Ok(entry.clone())
    }

    /// `events`, unless they are empty because the batch does not exist: a batch's
    /// stream is never empty, so only an empty read pays for the check.
    async fn known_if_empty(
        &self,
        batch: &BatchId,
        events: Vec<Event>,
    ) -> Result<Vec<Event>, AllocError> {
        if events.is_empty() {
            let exists: bool = self.conn().exists(self.keys(batch).meta()).await?;
            if !exists {
                return Err(ErrorCode::UnknownBatch.into());
            }
        }
        Ok(events)
    }

    /// A family's view from what a script read back.
    async fn view(
        &self,
        batch: &BatchId,
        family: &FamilyId,
        read: FamilyRead,
    ) -> Result<FamilyView, AllocError> {
        let c = self.cached_at_least(batch, read.gen).await?;
        let &i = c
            .families
            .get(family)
            .ok_or_else(|| corrupt(format!("family {family} missing from the batch")))?;
        let state = read.state()?;
        let closed: Vec<SessionId> = match (read.closed, read.current_session()) {
            (true, Some(s)) => vec![s],
            _ => Vec::new(),
        };
        let at = views::ReadAt {
            now: read.now,
            seq: read.seq,
        };
        views::family_view(
            &c.batch,
            &c.families,
            &c.batch.families[i],
            &state,
            &closed,
            at,
        )
        .ok_or_else(|| corrupt(format!("family {family} names an unknown session")))
    }

    /// One family's static fields, in load_part.lua's order.
    fn family_plan(batch: &Batch, f: &xuanfang_hub::Family) -> Result<[String; 9], AllocError> {
        let s = batch
            .session(&f.session)
            .ok_or_else(|| corrupt(format!("family {} has no session", f.id)))?;
        let window = rules::supplementary_window(batch, s);
        let edge = |m: Option<Millis>| m.map(|m| m.0.to_string()).unwrap_or_default();
        Ok([
            f.id.as_str().to_owned(),
            f.rank.to_string(),
            s.id.as_str().to_owned(),
            s.start.0.to_string(),
            s.deadline().0.to_string(),
            wire(&s.kind),
            json(&f.eligible_layouts)?,
            edge(window.map(|w| w.0)),
            edge(window.map(|w| w.1)),
        ])
    }

    /// Runs one script of a chunked load: `Ok(())`, or the refusal.
    async fn load_call(
        &self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<Vec<redis::Value>, AllocError> {
        // No replica wait per slice: nothing is visible until published, and the wait
        // after the last write (the batch list, below) covers every slice before it.
        match reply::reply(inv.invoke_async(&mut self.conn()).await?)? {
            Reply::Ok(payload) => Ok(payload),
            Reply::Refused(r) => Err(r.into()),
            Reply::Stale => Err(corrupt("load answered stale")),
        }
    }

    /// The chunked load after `load_begin`: units and families in slices, then the
    /// publishing call. Returns the epoch.
    async fn load_chunks(&self, batch: &Batch, token: &str) -> Result<i64, AllocError> {
        let k = self.keys(&batch.id);
        let staged = k.staged_units(token);
        let ttl = LOAD_LOCK_MS.to_string();
        for chunk in batch.units.chunks(LOAD_UNITS_PER_CALL) {
            let mut inv = scripts::LOAD_PART.prepare_invoke();
            inv.key(k.meta()).key(k.loading()).key(&staged);
            inv.arg(token).arg(&ttl).arg("units");
            for u in chunk {
                inv.arg(u.id.as_str()).arg(u.layout.as_str());
            }
            self.load_call(&inv).await?;
        }
        for chunk in batch.families.chunks(LOAD_FAMILIES_PER_CALL) {
            let mut inv = scripts::LOAD_PART.prepare_invoke();
            inv.key(k.meta()).key(k.loading()).key(&staged);
            inv.arg(token).arg(&ttl).arg("families");
            for f in chunk {
                inv.key(k.family(&f.id));
                for v in Self::family_plan(batch, f)? {
                    inv.arg(v);
                }
            }
            self.load_call(&inv).await?;
        }
        // The batch's JSON in slices too, at their byte offsets (a repeated call writes
        // the same bytes), so the publishing call renames it rather than copy it.
        let batch_json = json(batch)?;
        let staged_json = k.staged_loaded(token);
        for (i, slice) in batch_json
            .as_bytes()
            .chunks(LOAD_JSON_BYTES_PER_CALL)
            .enumerate()
        {
            let mut inv = scripts::LOAD_PART.prepare_invoke();
            inv.key(k.meta()).key(k.loading()).key(&staged_json);
            inv.arg(token)
                .arg(&ttl)
                .arg("json")
                .arg(i * LOAD_JSON_BYTES_PER_CALL)
                .arg(slice);
            self.load_call(&inv).await?;
        }
        let mut inv = scripts::LOAD_BATCH.prepare_invoke();
        inv.key(k.meta())
            .key(k.seq())
            .key(k.events())
            .key(k.units())
            .key(k.sessions())
            .key(k.loading())
            .key(&staged)
            .key(k.loaded())
            .key(&staged_json);
        inv.arg(self.now_arg())
            .arg(batch_json.len())
            .arg(token)
            .arg(batch.preselect_start.0)
            .arg(
                batch
                    .preselect_end
                    .map(|m| m.0.to_string())
                    .unwrap_or_default(),
            );
        for s in &batch.sessions {
            inv.arg(s.id.as_str())
                .arg(s.deadline().0)
                .arg(s.families.len());
        }
        let payload = self.load_call(&inv).await?;
        payload
            .first()
            .map(reply::int)
            .transpose()?
            .ok_or_else(|| corrupt("load reply lacks the epoch"))
    }
}

#[async_trait]
impl Allocator for RedisEngine {
    async fn load_batch(&self, batch: Batch) -> Result<(), AllocError> {
        if batch.validate().is_err() {
            return Err(ErrorCode::InvalidBatch.into());
        }
        // In slices, so no call holds Redis for long (one call of 10,000 families took
        // ~0.1 s and stalled every selection on the server); see load_batch.lua for why
        // readers still see the load as one step.
        let k = self.keys(&batch.id);
        let token = format!("{:016x}", rand::random::<u64>());
        let mut begin = scripts::LOAD_BEGIN.prepare_invoke();
        begin
            .key(k.meta())
            .key(k.seq())
            .key(k.loading())
            .arg(&token)
            .arg(LOAD_LOCK_MS);
        self.load_call(&begin).await?;
        let epoch = match self.load_chunks(&batch, &token).await {
            Ok(epoch) => epoch,
            Err(e) => {
                // Free the id for a retry at once; what was written stays invisible.
                let mut abort = scripts::LOAD_ABORT.prepare_invoke();
                abort
                    .key(k.loading())
                    .key(k.staged_units(&token))
                    .key(k.staged_loaded(&token))
                    .arg(&token);
                if let Err(a) = abort.invoke_async::<redis::Value>(&mut self.conn()).await {
                    tracing::warn!(batch = %batch.id, "releasing a failed load: {a}");
                }
                return Err(e);
            }
        };
        // Scored by load time (the epoch is the load's server time in ms), so
        // `batches()` lists oldest first.
        let mut w = self.writer().await?;
        let _: () = w
            .zadd(keys::batches(&self.namespace), batch.id.as_str(), epoch)
            .await?;
        w.acknowledged().await?;
        let id = batch.id.clone();
        self.cache
            .write()
            .insert(id, Arc::new(Cached::new(1, epoch as u64, batch)));
        Ok(())
    }

    async fn publish_supplementary(
        &self,
        batch: &BatchId,
        session: Session,
    ) -> Result<(), AllocError> {
        let k = self.keys(batch);
        for _ in 0..STALE_RETRIES {
            let c = self.current(batch).await?;
            let mut next = c.batch.clone();
            next.sessions.push(session.clone());
            let mut inv = scripts::PUBLISH_SUPPLEMENTARY.prepare_invoke();
            inv.key(k.meta())
                .key(k.seq())
                .key(k.events())
                .key(k.sessions())
                .key(k.supplementary());
            for f in &session.families {
                inv.key(k.family(f));
            }
            inv.arg(self.now_arg())
                .arg(c.gen)
                .arg(json(&session)?)
                .arg(session.id.as_str())
                .arg(wire(&session.kind))
                .arg(session.window_ms)
                .arg(session.start.0)
                .arg(session.deadline().0)
                // The static timing rules, decided by hub; the script checks them after
                // the families, in hub's order, and the server-time rule itself.
                .arg(
                    supplementary::earliest_start(&c.batch, &session.families)
                        .map_or(i64::MIN, |m| m.0),
                )
                .arg(u8::from(supplementary::overlaps_formal(&c.batch, &session)));
            for f in &session.families {
                inv.arg(f.as_str());
            }
            match reply::reply(self.write(&inv).await?)? {
                Reply::Ok(payload) => {
                    let gen = payload
                        .first()
                        .map(reply::int)
                        .transpose()?
                        .ok_or_else(|| corrupt("publish reply lacks the generation"))?;
                    let fresh = Arc::new(Cached::new(gen as u64, c.epoch, next));
                    let mut cache = self.cache.write();
                    let entry = cache.entry(batch.clone()).or_insert_with(|| fresh.clone());
                    if entry.gen < fresh.gen {
                        *entry = fresh;
                    }
                    return Ok(());
                }
                Reply::Refused(r) => return Err(r.into()),
                Reply::Stale => continue,
            }
        }
        Err(corrupt("publish_supplementary: batch kept changing"))
    }

    async fn act(
        &self,
        batch: &BatchId,
        family: &FamilyId,
        req_id: &str,
        action: Action,
    ) -> Result<Answer, AllocError> {
        let k = self.keys(batch);
        let (script, own_args): (&redis::Script, Vec<String>) = match &action {
            Action::Declare { stage } => (&scripts::DECLARE, vec![wire(stage)]),
            Action::Edit { list, edit, unit } => (
                &scripts::EDIT,
                vec![wire(list), wire(edit), unit.as_str().to_owned()],
            ),
            Action::SetList { list, units } => {
                let mut args = vec![wire(list)];
                args.extend(units.iter().map(|u| u.as_str().to_owned()));
                (&scripts::SET_LIST, args)
            }
            Action::Sync => (&scripts::SYNC, vec![]),
            Action::Confirm { unit } => (&scripts::CONFIRM, vec![unit.as_str().to_owned()]),
            Action::Waive => (&scripts::WAIVE, vec![]),
            Action::ApplySupplementary => (&scripts::APPLY_SUPPLEMENTARY, vec![]),
        };
        let mut inv = script.prepare_invoke();
        inv.key(k.meta())
            .key(k.seq())
            .key(k.events())
            .key(k.taken())
            .key(k.units())
            .key(k.closed())
            .key(k.replies(family))
            .key(k.family(family));
        inv.arg(self.now_arg()).arg(family.as_str()).arg(req_id);
        for a in &own_args {
            inv.arg(a);
        }
        match reply::reply(self.write(&inv).await?)? {
            Reply::Ok(payload) => {
                let read = FamilyRead::parse(payload)?;
                Ok(Ok(self.view(batch, family, read).await?))
            }
            // An unknown batch refuses the whole request, not the family's action.
            Reply::Refused(r) if r.code == ErrorCode::UnknownBatch => Err(r.into()),
            Reply::Refused(r) => Ok(Err(r)),
            Reply::Stale => Err(corrupt("act answered stale")),
        }
    }

    async fn close_session_step(
        &self,
        batch: &BatchId,
        session: &SessionId,
        max: usize,
    ) -> Result<CloseStep, AllocError> {
        let k = self.keys(batch);
        let mut stale = 0;
        let mut decided = 0;
        // Each call decides within a window of families after the cursor; a window with
        // nobody pending (all confirmed already) only advances the cursor, so go on.
        loop {
            let mut c = self.cached(batch).await?;
            if c.batch.session(session).is_none() {
                c = self.current(batch).await?;
            }
            let Some(s) = c.batch.session(session) else {
                return Err(ErrorCode::UnknownSession.into());
            };
            let cursor: Option<usize> = self.conn().hget(k.cursor(), session.as_str()).await?;
            let c0 = cursor.unwrap_or(0).min(s.families.len());
            let window = close_window(max);
            let rest = &s.families[c0..(c0 + window).min(s.families.len())];
            let mut inv = scripts::CLOSE_SESSION.prepare_invoke();
            inv.key(k.meta())
                .key(k.seq())
                .key(k.events())
                .key(k.taken())
                .key(k.closed())
                .key(k.sessions())
                .key(k.cursor());
            for f in rest {
                inv.key(k.family(f));
            }
            inv.arg(self.now_arg())
                .arg(session.as_str())
                .arg(c0)
                .arg(max);
            for f in rest {
                inv.arg(f.as_str());
            }
            match reply::reply(self.write(&inv).await?)? {
                Reply::Ok(payload) => {
                    let n = payload.first().map(reply::int).transpose()?.unwrap_or(0);
                    let closed = payload.get(1).map(reply::int).transpose()?.unwrap_or(0) != 0;
                    let window_ran_out =
                        payload.get(2).map(reply::int).transpose()?.unwrap_or(0) != 0;
                    decided += n as usize;
                    if closed || decided > 0 || !window_ran_out {
                        return Ok(CloseStep { decided, closed });
                    }
                }
                Reply::Refused(r) => return Err(r.into()),
                Reply::Stale => {
                    stale += 1;
                    if stale > STALE_RETRIES {
                        break;
                    }
                }
            }
        }
        Err(corrupt("close_session_step: session keys kept changing"))
    }

    async fn batches(&self) -> Result<Vec<BatchId>, AllocError> {
        let ids: Vec<String> = self
            .conn()
            .zrange(keys::batches(&self.namespace), 0, -1)
            .await?;
        Ok(ids.into_iter().map(BatchId).collect())
    }

    async fn catalog(&self, batch: &BatchId) -> Result<Catalog, AllocError> {
        let c = self.current(batch).await?;
        let closed: Vec<String> = self.conn().hkeys(self.keys(batch).closed()).await?;
        let closed: Vec<SessionId> = closed.into_iter().map(SessionId).collect();
        Ok(views::catalog(&c.batch, &closed))
    }

    async fn batch(&self, batch: &BatchId) -> Result<Batch, AllocError> {
        Ok(self.current(batch).await?.batch.clone())
    }

    async fn board(&self, batch: &BatchId) -> Result<BoardState, AllocError> {
        let k = self.keys(batch);
        let mut inv = scripts::BOARD.prepare_invoke();
        inv.key(k.meta())
            .key(k.seq())
            .key(k.taken())
            .key(k.closed());
        let payload = match reply::reply(inv.invoke_async(&mut self.conn()).await?)? {
            Reply::Ok(p) => p,
            Reply::Refused(r) => return Err(r.into()),
            Reply::Stale => return Err(corrupt("board answered stale")),
        };
        let mut it = payload.into_iter();
        let mut next = || it.next().ok_or_else(|| corrupt("short board reply"));
        let seq = reply::int(&next()?)? as u64;
        let epoch = reply::int(&next()?)? as u64;
        let gen = reply::int(&next()?)? as u64;
        let holders = reply::pairs(next()?)?
            .into_iter()
            .map(|(u, h)| {
                serde_json::from_str::<Holder>(&h)
                    .map(|h| (UnitId(u), h))
                    .map_err(|e| corrupt(format!("holder: {e}")))
            })
            .collect::<Result<HashMap<_, _>, _>>()?;
        let mut closed = reply::pairs(next()?)?
            .into_iter()
            .map(|(s, seq)| Ok((seq.parse::<u64>().map_err(|_| corrupt("closed seq"))?, s)))
            .collect::<Result<Vec<_>, AllocError>>()?;
        closed.sort();
        let closed: Vec<SessionId> = closed.into_iter().map(|(_, s)| SessionId(s)).collect();
        let c = self.cached_at_least(batch, gen).await?;
        let board_seq = follow::last_public(&mut self.conn(), &k.events(), seq).await?;
        Ok(BoardState {
            epoch,
            seq,
            board_seq,
            taken: views::taken(&c.batch, &holders),
            sessions: views::sessions(&c.batch, &closed),
        })
    }

    async fn family(&self, batch: &BatchId, family: &FamilyId) -> Result<FamilyView, AllocError> {
        let k = self.keys(batch);
        let mut inv = scripts::FAMILY.prepare_invoke();
        inv.key(k.meta())
            .key(k.closed())
            .key(k.family(family))
            .key(k.seq());
        inv.arg(self.now_arg());
        match reply::reply(inv.invoke_async(&mut self.conn()).await?)? {
            Reply::Ok(payload) => self.view(batch, family, FamilyRead::parse(payload)?).await,
            Reply::Refused(r) => Err(r.into()),
            Reply::Stale => Err(corrupt("family answered stale")),
        }
    }

    async fn results(&self, batch: &BatchId) -> Result<Vec<FamilyRecord>, AllocError> {
        let c = self.current(batch).await?;
        let k = self.keys(batch);
        let mut out = Vec::with_capacity(c.batch.families.len());
        // Pipelined, not one script: an export of thousands of families must not hold
        // the server; each family's hash is still read whole.
        for chunk in c.batch.families.chunks(RESULTS_CHUNK) {
            let mut pipe = redis::pipe();
            for f in chunk {
                pipe.hgetall(k.family(&f.id));
            }
            let hashes: Vec<HashMap<String, String>> = pipe.query_async(&mut self.conn()).await?;
            for (f, fields) in chunk.iter().zip(hashes) {
                out.push(FamilyRecord {
                    family: f.clone(),
                    state: reply::family_state(&fields)?,
                });
            }
        }
        Ok(out)
    }

    async fn events(
        &self,
        batch: &BatchId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, AllocError> {
        let events = self
            .replicated_range(&self.keys(batch).events(), after, limit)
            .await?;
        self.known_if_empty(batch, events).await
    }

    async fn wait_events(
        &self,
        batch: &BatchId,
        after: u64,
        limit: usize,
        wait: Duration,
    ) -> Result<Vec<Event>, AllocError> {
        let stream = self.keys(batch).events();
        let events = if wait.is_zero() || limit == 0 {
            self.replicated_range(&stream, after, limit).await?
        } else {
            self.follower
                .read_blocking(&stream, after, limit, wait)
                .await?
        };
        self.known_if_empty(batch, events).await
    }

    async fn epoch(&self, batch: &BatchId) -> Result<u64, AllocError> {
        let epoch: Option<u64> = self.conn().hget(self.keys(batch).meta(), "epoch").await?;
        epoch.ok_or(AllocError::Rejected(Rejection::new(
            ErrorCode::UnknownBatch,
        )))
    }

    async fn now(&self) -> Result<Millis, AllocError> {
        if let Some(c) = &self.clock {
            return Ok(c.now());
        }
        let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(&mut self.conn()).await?;
        Ok(Millis(secs * 1000 + micros / 1000))
    }

    async fn ping(&self) -> Result<(), AllocError> {
        let _: String = redis::cmd("PING").query_async(&mut self.conn()).await?;
        Ok(())
    }
}

/// Families passed to one close step: a few chunks' worth, so families that already
/// confirmed (skipped) rarely leave a step with nobody to decide.
fn close_window(max: usize) -> usize {
    max.saturating_mul(2).clamp(64, 2000)
}
