//! The reference phase (issue #13 goal 4): a minimal allocator on the same Redis, so
//! the engine's confirm rate is read against what this server, disk and client can do
//! in the same run, not against a figure taken on another day.
//!
//! One script per attempt (`reference.lua`: check the family and the unit, write both,
//! append one event) over one multiplexed connection. Bench code, not the product: it
//! keeps no answer per request, so it is cheaper than any allocator with the
//! engine's idempotency contract can be.

use redis::aio::MultiplexedConnection;
use redis::{Script, Value};
use xuanfang_hub::{FamilyId, UnitId};

use crate::Res;

/// Family hashes written per pipeline while preparing (not timed).
const PREPARE_CHUNK: usize = 500;

/// One reference allocator over its own keys (`{r:<tag>}:…`).
pub struct Reference {
    conn: MultiplexedConnection,
    script: Script,
    prefix: String,
}

impl Reference {
    /// Connects and writes one hash per family (its rank), under the hash tag
    /// `{r:<tag>}` so each phase starts on keys of its own.
    pub async fn prepare(client: &redis::Client, tag: &str, families: &[FamilyId]) -> Res<Self> {
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
        let script = Script::new(include_str!("reference.lua"));
        script.prepare_invoke().load_async(&mut conn).await?;
        Ok(Self {
            conn,
            script,
            prefix,
        })
    }

    /// One confirm attempt: whether it was accepted.
    pub async fn confirm(&self, family: &FamilyId, unit: &UnitId) -> Res<bool> {
        let mut conn = self.conn.clone();
        let answer: Value = self
            .script
            .key(format!("{}:fam:{family}", self.prefix))
            .key(format!("{}:taken", self.prefix))
            .key(format!("{}:events", self.prefix))
            .arg(family.as_str())
            .arg(unit.as_str())
            .invoke_async(&mut conn)
            .await?;
        match answer {
            Value::Int(1) => Ok(true),
            Value::Array(_) => Ok(false),
            other => Err(format!("reference script answered {other:?}").into()),
        }
    }
}
