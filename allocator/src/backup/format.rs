//! The backup file: one self-describing file per export, whatever the engine.
//!
//! ```text
//! xuanfang-backup 1\n                 magic and format version
//! {manifest JSON}\n                   what is inside (readable: `head -2 FILE | tail -1 | jq`)
//! <entry bytes, one after another>    lengths and SHA-256 of each in the manifest
//! xuanfang-backup-sha256 <hex>\n      SHA-256 of every byte before this line
//! ```
//!
//! The trailer is checked before anything else is believed, so a truncated file (no
//! trailer, or one that does not match) and a tampered one (any byte changed, the
//! manifest included) are refused before a restore writes anything.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The first line's word; the number after it is [`VERSION`].
pub const MAGIC: &str = "xuanfang-backup";
/// The format this build writes and reads.
pub const VERSION: u32 = 1;
const TRAILER: &str = "xuanfang-backup-sha256 ";
/// `TRAILER`, 64 hex digits, `\n`.
const TRAILER_LEN: usize = TRAILER.len() + 64 + 1;

/// Which engine's state a file holds; it restores only into the same kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineKind {
    /// The files of a `serve --data-dir` directory (journals, signing journals, blobs).
    Embedded,
    /// Every key of each batch (`DUMP` payloads) and its entry in the batch set.
    Redis,
}

/// One batch in the file, as it was when exported: what a restore reproduces.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchSummary {
    pub id: String,
    pub epoch: u64,
    /// The seq of the batch's last event (its log holds events 1..=seq).
    pub seq: u64,
    /// The seq of the batch's last signing entry (0: none).
    #[serde(default)]
    pub signing_seq: u64,
}

/// One stored thing: a file (embedded: its path under the data directory) or a Redis
/// key (its name; the bytes are its `DUMP` payload).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryInfo {
    pub name: String,
    pub len: u64,
    pub sha256: String,
}

/// The manifest: the file's second line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub engine: EngineKind,
    /// When the export was taken, ms since the Unix epoch (this machine's clock).
    pub created_ms: i64,
    /// Where it was taken from (a path, or the Redis URL without its password).
    pub source: String,
    pub batches: Vec<BatchSummary>,
    pub entries: Vec<EntryInfo>,
}

/// A whole backup in memory: the manifest and each entry's bytes, in manifest order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backup {
    pub manifest: Manifest,
    pub data: Vec<Vec<u8>>,
}

/// Why a file cannot be read as a backup. Nothing is restored from such a file.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("not a xuanfang backup (it does not start with `{MAGIC} `)")]
    NotABackup,
    #[error("backup format version {0} is not supported by this build (it reads {VERSION})")]
    Version(String),
    #[error("the backup is truncated or damaged: its checksum line is missing")]
    Truncated,
    #[error(
        "the backup's checksum does not match its contents: the file is damaged or was changed"
    )]
    Checksum,
    #[error("the backup's manifest cannot be read: {0}")]
    Manifest(String),
    #[error("the backup's entry {0} is damaged: {1}")]
    Entry(String, &'static str),
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Backup {
    /// A backup of these entries; the manifest's entry list is computed here.
    pub fn new(
        engine: EngineKind,
        created_ms: i64,
        source: String,
        batches: Vec<BatchSummary>,
        entries: Vec<(String, Vec<u8>)>,
    ) -> Backup {
        let infos = entries
            .iter()
            .map(|(name, bytes)| EntryInfo {
                name: name.clone(),
                len: bytes.len() as u64,
                sha256: sha256_hex(bytes),
            })
            .collect();
        Backup {
            manifest: Manifest {
                engine,
                created_ms,
                source,
                batches,
                entries: infos,
            },
            data: entries.into_iter().map(|(_, b)| b).collect(),
        }
    }

    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let manifest = serde_json::to_string(&self.manifest).unwrap_or_else(|e| {
            // Strings and numbers only: this cannot fail; an empty manifest would be refused.
            tracing::error!("backup manifest encode failed: {e}");
            String::new()
        });
        let mut out = format!("{MAGIC} {VERSION}\n{manifest}\n").into_bytes();
        for d in &self.data {
            out.extend_from_slice(d);
        }
        let sum = sha256_hex(&out);
        out.extend_from_slice(format!("{TRAILER}{sum}\n").as_bytes());
        out
    }

    /// Reads a file's bytes, checking the magic, the version, the checksum and every
    /// entry's length and SHA-256.
    pub fn decode(bytes: &[u8]) -> Result<Backup, FormatError> {
        let first_end = bytes
            .iter()
            .take(64)
            .position(|&b| b == b'\n')
            .ok_or(FormatError::NotABackup)?;
        let first =
            std::str::from_utf8(&bytes[..first_end]).map_err(|_| FormatError::NotABackup)?;
        let version = first
            .strip_prefix(MAGIC)
            .and_then(|v| v.strip_prefix(' '))
            .ok_or(FormatError::NotABackup)?;
        if version != VERSION.to_string() {
            return Err(FormatError::Version(version.to_owned()));
        }
        if bytes.len() < first_end + 1 + TRAILER_LEN {
            return Err(FormatError::Truncated);
        }
        let (body, trailer) = bytes.split_at(bytes.len() - TRAILER_LEN);
        let sum = std::str::from_utf8(trailer)
            .ok()
            .and_then(|t| t.strip_prefix(TRAILER))
            .and_then(|t| t.strip_suffix('\n'))
            .ok_or(FormatError::Truncated)?;
        if sum != sha256_hex(body) {
            return Err(FormatError::Checksum);
        }
        let rest = &body[first_end + 1..];
        let line_end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| FormatError::Manifest("no end of line".into()))?;
        let manifest: Manifest = serde_json::from_slice(&rest[..line_end])
            .map_err(|e| FormatError::Manifest(e.to_string()))?;
        let mut data = Vec::with_capacity(manifest.entries.len());
        let mut at = line_end + 1;
        for e in &manifest.entries {
            let len = usize::try_from(e.len)
                .map_err(|_| FormatError::Entry(e.name.clone(), "too long"))?;
            let end = at
                .checked_add(len)
                .filter(|&end| end <= rest.len())
                .ok_or_else(|| {
                    FormatError::Entry(e.name.clone(), "shorter than the manifest says")
                })?;
            let bytes = &rest[at..end];
            if sha256_hex(bytes) != e.sha256 {
                return Err(FormatError::Entry(
                    e.name.clone(),
                    "its SHA-256 does not match",
                ));
            }
            data.push(bytes.to_vec());
            at = end;
        }
        if at != rest.len() {
            return Err(FormatError::Manifest("bytes after the last entry".into()));
        }
        Ok(Backup { manifest, data })
    }

    /// Entries with their bytes.
    pub fn entries(&self) -> impl Iterator<Item = (&EntryInfo, &[u8])> {
        self.manifest
            .entries
            .iter()
            .zip(self.data.iter().map(Vec::as_slice))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Backup {
        Backup::new(
            EngineKind::Embedded,
            1,
            "here".into(),
            vec![BatchSummary {
                id: "b".into(),
                epoch: 7,
                seq: 3,
                signing_seq: 0,
            }],
            vec![("b.journal".into(), b"abc".to_vec()), ("x".into(), vec![])],
        )
    }

    #[test]
    fn a_backup_reads_back_as_written() {
        let b = sample();
        assert_eq!(Backup::decode(&b.encode()).unwrap(), b);
    }

    #[test]
    fn a_truncated_file_is_refused() {
        let bytes = sample().encode();
        for cut in [1, 10, TRAILER_LEN, bytes.len() - 20] {
            let e = Backup::decode(&bytes[..bytes.len() - cut]).unwrap_err();
            assert!(
                matches!(e, FormatError::Truncated | FormatError::Checksum),
                "cut {cut}: {e}"
            );
        }
    }

    #[test]
    fn any_changed_byte_is_refused() {
        let bytes = sample().encode();
        let first_line = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
        for i in first_line..bytes.len() - TRAILER_LEN {
            let mut t = bytes.clone();
            t[i] ^= 0x01;
            assert!(Backup::decode(&t).is_err(), "byte {i} changed and accepted");
        }
    }

    #[test]
    fn another_version_or_no_magic_is_refused() {
        let bytes = sample().encode();
        let mut v2 = b"xuanfang-backup 2\n".to_vec();
        v2.extend_from_slice(&bytes[b"xuanfang-backup 1\n".len()..]);
        assert!(matches!(Backup::decode(&v2), Err(FormatError::Version(v)) if v == "2"));
        assert!(matches!(
            Backup::decode(b"hello\n"),
            Err(FormatError::NotABackup)
        ));
    }
}
