//! References to stored files (card photos, signed contracts, notices).
//!
//! The hub never holds file bytes: a [`BlobRef`] names a blob the gateway's blob store
//! already holds and pins its content with a SHA-256, so an event log proves which
//! exact file a family uploaded or signed. Checking uploads (size caps, sniffing the
//! real type) is the gateway's job before it builds an action.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A SHA-256 digest; written as 64 lowercase hex digits on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256(pub [u8; 32]);

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({self})")
    }
}

/// Why a string is not a SHA-256 digest.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a sha256 is 64 hex digits")]
pub struct BadSha256;

impl FromStr for Sha256 {
    type Err = BadSha256;

    fn from_str(s: &str) -> Result<Self, BadSha256> {
        let s = s.as_bytes();
        if s.len() != 64 {
            return Err(BadSha256);
        }
        let digit = |c: u8| match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(BadSha256),
        };
        let mut out = [0u8; 32];
        for (i, pair) in s.chunks(2).enumerate() {
            out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
        }
        Ok(Sha256(out))
    }
}

impl Serialize for Sha256 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Sha256 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Its wire form (a string of 64 hex digits), which its own `Serialize` writes.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Sha256 {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .pattern(Some("^[0-9a-f]{64}$"))
            .description(Some("SHA-256, 64 lowercase hex digits"))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Sha256 {}

/// A file held by the blob store.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BlobRef {
    /// The store's key for the blob.
    pub id: String,
    /// The digest of the bytes, computed by the gateway when it stored them.
    pub sha256: Sha256,
    /// The checked media type, e.g. `image/jpeg`, `application/pdf`.
    pub content_type: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// The longest blob id the hub records.
pub const MAX_BLOB_ID: usize = 200;

impl BlobRef {
    /// An id the store could have issued and a non-empty file.
    fn is_plausible(&self) -> bool {
        !self.id.is_empty() && self.id.len() <= MAX_BLOB_ID && self.bytes > 0
    }

    /// A plausible picture (card photos, the handwritten signature).
    pub fn is_image(&self) -> bool {
        self.is_plausible() && self.content_type.starts_with("image/")
    }

    /// A plausible PDF (the contract, the move-in notice).
    pub fn is_pdf(&self) -> bool {
        self.is_plausible() && self.content_type == "application/pdf"
    }
}
