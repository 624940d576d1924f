//! The reference phase (issue #13 goal 4): a minimal allocator on the same Redis, so
//! the engine's confirm rate is read against what this server, disk and client can do
//! in the same run, not against a figure taken on another day.
//!
//! One script per attempt (`reference.lua`: check the family and the unit, write both,
//! append one event) over one multiplexed connection. Bench code, not the product: it
//! keeps no answer per request, so it is cheaper than any allocator with the
//! engine's idempotency contract can be. Its [`Kind::Remembered`] twin
//! (`reference_remembered.lua`) also stores every answer as the engine does, which
//! tells what the contract itself costs apart from the rest of the engine.

use redis::aio::MultiplexedConnection;
use redis::{Script, Value};
use xuanfang_hub::{FamilyId, UnitId};

use crate::Res;

/// Family hashes written per pipeline while preparing (not timed).
const PREPARE_CHUNK: usize = 500;

/// Which reference.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `reference.lua`: no stored answers.
    Plain,
    /// `reference_remembered.lua`: every answer stored in act.lua's ring.
    Remembered,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Plain => "reference",
            Kind::Remembered => "reference + answers",
        }
    }

    /// The script's text as sent to Redis.
    pub fn script(self) -> String {
        match self {
            Kind::Plain => include_str!("reference.lua").to_owned(),
            // The engine's prelude: REPLIES_KEPT, the ring's size.
            Kind::Remembered => format!(
                "{}{}",
                xuanfang_allocator::redis_engine::script_prelude(),
                include_str!("reference_remembered.lua")
            ),
        }
    }
}

/// One reference allocator over its own keys (`{r:<tag>}:…`).
pub struct Reference {
    conn: MultiplexedConnection,
    script: Script,
    kind: Kind,
    prefix: String,
}

impl Reference {
    /// Connects and writes one hash per family (its rank), under the hash tag
    /// `{r:<tag>}` so each phase starts on keys of its own.
    pub async fn prepare(
        client: &redis::Client,
        kind: Kind,
        tag: &str,
        families: &[FamilyId],
    ) -> Res<Self> {
        let mut conn = client.get_multiplexed_async_connection().await?;
        let prefix = format!("{{r:{tag}}}");
        for (c, chunk) in families.chunks(PREPARE_CHUNK).enumerate() {
            let mut pipe = redis::pipe();
            for (i, f) in chunk.iter().enumerate() {
                let rank = c * PREPARE_CHUNK + i + 1;
                pipe.hset(format!("{prefix}:fam:{f}"), "rank", rank)
                    .ignore();
            }
            pipe.query_async::<()>(&mut conn).await?;
        }
        let script = Script::new(&kind.script());
        script.prepare_invoke().load_async(&mut conn).await?;
        Ok(Self {
            conn,
            script,
            kind,
            prefix,
        })
    }

    /// One confirm attempt with request id `req_id`: whether it was accepted.
    pub async fn confirm(&self, family: &FamilyId, unit: &UnitId, req_id: &str) -> Res<bool> {
        let mut conn = self.conn.clone();
        let mut inv = self.script.prepare_invoke();
        inv.key(format!("{}:fam:{family}", self.prefix))
            .key(format!("{}:taken", self.prefix))
            .key(format!("{}:events", self.prefix))
            .arg(family.as_str())
            .arg(unit.as_str());
        if self.kind == Kind::Remembered {
            inv.key(format!("{}:rep:{family}", self.prefix)).arg(req_id);
        }
        let answer: Value = inv.invoke_async(&mut conn).await?;
        match answer {
            Value::Int(1) => Ok(true),
            Value::Array(_) => Ok(false),
            // A stored answer, given back to a repeated request.
            Value::BulkString(b) => Ok(b == b"ok"),
            other => Err(format!("reference script answered {other:?}").into()),
        }
    }
}
