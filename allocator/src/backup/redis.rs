//! Backup of the Redis engine: each batch's keys (hash tag `{b:<batch>}`) and its entry
//! in the batch set.
//!
//! One script per batch `DUMP`s every key of the batch (`backup_export.lua`): scripts
//! run alone, so the copy is an atomic snapshot of the batch — state, stream and
//! signing log agree — taken while gateways serve. A restore `RESTORE`s them the same
//! way (`backup_restore.lua`), then adds the batch to the batch set. `DUMP` payloads
//! carry Redis's RDB version: a file restores into the same or a newer Redis.

use std::sync::LazyLock;

use redis::{AsyncCommands, Script};

use super::format::{Backup, BatchSummary, EngineKind};
use super::{now_ms, BackupError};
use crate::redis_engine::conn::Conn;
use crate::redis_engine::keys::{self, BatchKeys};
use xuanfang_hub::BatchId;

static EXPORT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/backup_export.lua")));
static RESTORE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/backup_restore.lua")));

/// `s` with Redis glob's special characters escaped.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The prefix every key of `batch` starts with, and the glob that matches them all.
fn prefix_and_glob(namespace: &str, batch: &str) -> (String, String) {
    let prefix = format!("{namespace}{{b:{batch}}}:");
    let glob = format!("{}*", glob_escape(&prefix));
    (prefix, glob)
}

fn text(v: &[u8]) -> Result<&str, BackupError> {
    std::str::from_utf8(v).map_err(|_| BackupError::Reply("not UTF-8 where text was due".into()))
}

fn number(v: &[u8]) -> Result<u64, BackupError> {
    text(v)?.parse().map_err(|_| {
        BackupError::Reply(format!("{:?} is not a number", String::from_utf8_lossy(v)))
    })
}

/// A Redis URL without its password, to name the source in the manifest.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}{}", &url[..s + 3], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// Every batch of the engine under `namespace` (empty in production).
pub async fn export(conn: &mut Conn, namespace: &str, source: &str) -> Result<Backup, BackupError> {
    let ids: Vec<String> = conn.zrange(keys::batches(namespace), 0, -1).await?;
    let mut batches = Vec::new();
    let mut entries = Vec::new();
    for id in ids {
        let k = BatchKeys::new(namespace, &BatchId(id.clone()));
        let (_, glob) = prefix_and_glob(namespace, &id);
        let reply: Vec<Vec<u8>> = EXPORT
            .key(k.meta())
            .key(k.seq())
            .key(k.signing_seq())
            .arg(glob)
            .invoke_async(conn)
            .await?;
        match reply.first().map(Vec::as_slice) {
            Some(b"ok") if reply.len() >= 4 && reply.len().is_multiple_of(2) => {}
            Some(b"err") => {
                // Listed but gone (deleted between the two reads): nothing to keep.
                tracing::warn!(batch = %id, "listed in the batch set but has no keys; skipped");
                continue;
            }
            _ => return Err(BackupError::Reply("short export reply".into())),
        }
        batches.push(BatchSummary {
            id,
            epoch: number(&reply[1])?,
            seq: number(&reply[2])?,
            signing_seq: number(&reply[3])?,
        });
        let mut rest = reply.into_iter().skip(4);
        while let (Some(key), Some(dump)) = (rest.next(), rest.next()) {
            entries.push((text(&key)?.to_owned(), dump));
        }
    }
    Ok(Backup::new(
        EngineKind::Redis,
        now_ms(),
        redact(source),
        batches,
        entries,
    ))
}

/// A key's name and its `DUMP` payload, as the file holds them.
type KeyDump<'a> = (&'a str, &'a [u8]);

/// What a restore did.
#[derive(Debug)]
pub struct Restored {
    pub batches: usize,
    pub keys: usize,
}

/// Restores a backup into the Redis under `namespace`. Refuses another engine's
/// backup, a key that belongs to no batch of the backup, and — unless `force` — a
/// batch that exists there; all before anything is written. With `force` each batch of
/// the backup replaces the one of the same id (other batches are left alone).
pub async fn restore(
    conn: &mut Conn,
    namespace: &str,
    backup: &Backup,
    force: bool,
) -> Result<Restored, BackupError> {
    if backup.manifest.engine != EngineKind::Redis {
        return Err(BackupError::WrongEngine {
            file: backup.manifest.engine,
            target: EngineKind::Redis,
        });
    }
    // Each key to the batch whose prefix it carries.
    let mut per_batch: Vec<(&BatchSummary, Vec<KeyDump>)> = backup
        .manifest
        .batches
        .iter()
        .map(|b| (b, Vec::new()))
        .collect();
    for (info, bytes) in backup.entries() {
        let slot = per_batch
            .iter_mut()
            .find(|(b, _)| info.name.starts_with(&prefix_and_glob(namespace, &b.id).0))
            .ok_or_else(|| BackupError::BadEntry(info.name.clone()))?;
        slot.1.push((info.name.as_str(), bytes));
    }
    if !force {
        let mut found = Vec::new();
        for (b, _) in &per_batch {
            let k = BatchKeys::new(namespace, &BatchId(b.id.clone()));
            let listed: Option<f64> = conn.zscore(keys::batches(namespace), &b.id).await?;
            let exists: bool = conn.exists(k.meta()).await?;
            if listed.is_some() || exists {
                found.push(b.id.clone());
            }
        }
        if !found.is_empty() {
            return Err(BackupError::NotEmpty {
                target: "redis".into(),
                what: format!("batch {}", found.join(", ")),
            });
        }
    }
    let mut keys_restored = 0;
    for (b, entries) in &per_batch {
        let k = BatchKeys::new(namespace, &BatchId(b.id.clone()));
        let (_, glob) = prefix_and_glob(namespace, &b.id);
        let mut inv = RESTORE.key(k.meta());
        inv.arg(glob).arg(if force { "1" } else { "0" });
        for (key, dump) in entries {
            inv.arg(*key).arg(*dump);
        }
        let reply: Vec<String> = inv.invoke_async(conn).await?;
        match reply.first().map(String::as_str) {
            Some("ok") => keys_restored += entries.len(),
            Some("err") => {
                // Another writer created it after the check above; nothing was written.
                return Err(BackupError::NotEmpty {
                    target: "redis".into(),
                    what: format!("batch {}", b.id),
                });
            }
            _ => return Err(BackupError::Reply("short restore reply".into())),
        }
        // As `load_batch` does: the set is outside the batch's slot, written after it.
        let () = conn.zadd(keys::batches(namespace), &b.id, b.epoch).await?;
    }
    Ok(Restored {
        batches: per_batch.len(),
        keys: keys_restored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_glob_matches_only_the_batch_keys() {
        assert_eq!(prefix_and_glob("", "b1").1, "{b:b1}:*");
        assert_eq!(prefix_and_glob("t:", "a*[b]").1, "t:{b:a\\*\\[b\\]}:*");
    }

    #[test]
    fn a_password_is_not_written_into_the_manifest() {
        assert_eq!(redact("redis://:s3cret@host:6379/0"), "redis://host:6379/0");
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
    }
}
