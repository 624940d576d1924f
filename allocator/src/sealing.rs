//! Personal data at rest: the card number and phone of a signing record are stored
//! encrypted (AES-256-GCM) in every engine, the embedded journal and Redis alike.
//!
//! Why here and not in hub: the hub's events carry the values as given (the rules need
//! them: Luhn, "the same details again change nothing"), and storing is the engine's
//! job. So an engine seals an entry just before it writes it ([`Sealer::seal_entry`])
//! and opens it just after it reads it ([`Sealer::open_entry`]); memory, replies and
//! views hold the clear record (views show only the masked forms).
//!
//! A sealed value is `aes2:<key id>:` + base64(nonce ‖ ciphertext ‖ tag), with a random
//! 96-bit nonce per value (never reused under one key in practice: 2^-32 collision odds
//! only after ~2^32 values) and the field's name as associated data, so a sealed phone
//! cannot be passed off as a card number.
//!
//! Keys rotate without losing data: values are sealed with the current key and name it
//! (the key id: the first 4 bytes of a SHA-256 of the key, never the key), and opened
//! with whichever key of the ring ([`SigningOptions::old_keys`]) sealed them. Values of
//! the first scheme (`aes1:`, no key id) are opened by trying each key. An old key can
//! be dropped once nothing sealed with it is kept (`xuanfang export` then `restore`
//! re-seals a copy with the current key). It goes where the clear value was ([`Phone`] and
//! [`CardNumber`] are plain strings on the wire), so the stored entry keeps the shape of
//! a [`SigningEntry`].

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use xuanfang_hub::signing::{CardNumber, Phone, SigningEntry, SigningEvent};

use crate::contract::AllocError;

/// The prefix of a sealed value (the scheme's version).
pub const SEALED_PREFIX: &str = "aes2:";
/// The first scheme's prefix: no key id, still opened.
const SEALED_PREFIX_V1: &str = "aes1:";
/// The header of a sealed file: magic, then the key id (files of the first scheme have
/// none: nonce ‖ ciphertext ‖ tag).
const FILE_MAGIC: &[u8; 4] = b"XFS2";
const NONCE_LEN: usize = 12;
const AAD_PHONE: &[u8] = b"xuanfang signing phone";
const AAD_CARD: &[u8] = b"xuanfang signing card_number";

/// How an engine stores signing: the key that encrypts personal data at rest.
#[derive(Clone)]
pub struct SigningOptions {
    /// AES-256 key for card numbers and phones: everything new is sealed with it. From
    /// the deployment's secret store; losing it makes stored details unreadable.
    pub data_key: [u8; 32],
    /// Earlier keys, kept to open what they sealed: a rotation adds the new key as
    /// `data_key` and moves the old one here.
    pub old_keys: Vec<[u8; 32]>,
}

impl SigningOptions {
    /// Options with one key and no earlier ones.
    pub fn new(data_key: [u8; 32]) -> Self {
        Self {
            data_key,
            old_keys: Vec::new(),
        }
    }

    /// The same, also opening what `old` keys sealed.
    pub fn with_old_keys(mut self, old: Vec<[u8; 32]>) -> Self {
        self.old_keys = old;
        self
    }
}

impl fmt::Debug for SigningOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningOptions")
            .field("data_key", &KeyId::of(&self.data_key))
            .field(
                "old_keys",
                &self.old_keys.iter().map(KeyId::of).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Names a data key in what it sealed without giving anything of it away.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; 4]);

impl KeyId {
    pub fn of(key: &[u8; 32]) -> Self {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"xuanfang data key id\0");
        h.update(key);
        let d = h.finalize();
        Self([d[0], d[1], d[2], d[3]])
    }

    fn parse(hex8: &str) -> Option<Self> {
        let b = hex::decode(hex8).ok()?;
        Some(Self(b.try_into().ok()?))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// Seals and opens the personal fields of signing entries.
#[derive(Clone)]
pub struct Sealer {
    /// The current key first, then the earlier ones.
    ring: Vec<(KeyId, Aes256Gcm)>,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer(<key redacted>)")
    }
}

fn bad(what: &str) -> AllocError {
    AllocError::Corrupt(format!(
        "sealed {what}: cannot decrypt (wrong data key or damaged)"
    ))
}

fn unknown_key(what: &str, id: KeyId) -> AllocError {
    AllocError::Corrupt(format!(
        "sealed {what}: sealed with data key {id}, which is not configured \
         (give it with --old-data-key-file)"
    ))
}

/// Decrypts nonce ‖ ciphertext ‖ tag, `None` when the key or the bytes are wrong.
fn decrypt(cipher: &Aes256Gcm, bytes: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    if bytes.len() < NONCE_LEN {
        return None;
    }
    let (nonce, ct) = bytes.split_at(NONCE_LEN);
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
        .ok()
}

impl Sealer {
    pub fn new(options: &SigningOptions) -> Self {
        let mut ring = Vec::new();
        for key in std::iter::once(&options.data_key).chain(&options.old_keys) {
            let id = KeyId::of(key);
            if !ring.iter().any(|(k, _)| *k == id) {
                ring.push((id, Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key))));
            }
        }
        Self { ring }
    }

    /// The id of the key new values are sealed with.
    pub fn current(&self) -> KeyId {
        self.ring[0].0
    }

    fn cipher(&self, id: KeyId, what: &str) -> Result<&Aes256Gcm, AllocError> {
        self.ring
            .iter()
            .find(|(k, _)| *k == id)
            .map(|(_, c)| c)
            .ok_or_else(|| unknown_key(what, id))
    }

    fn seal(&self, clear: &str, aad: &[u8]) -> String {
        let (id, cipher) = &self.ring[0];
        let nonce: [u8; NONCE_LEN] = rand::random();
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: clear.as_bytes(),
                    aad,
                },
            )
            .expect("AES-GCM encryption of a short value cannot fail");
        let mut bytes = Vec::with_capacity(NONCE_LEN + sealed.len());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&sealed);
        format!(
            "{SEALED_PREFIX}{id}:{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )
    }

    fn open(&self, sealed: &str, aad: &[u8], what: &str) -> Result<String, AllocError> {
        let decode = |b: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|_| bad(what))
        };
        let clear = if let Some(rest) = sealed.strip_prefix(SEALED_PREFIX) {
            let (id, body) = rest.split_once(':').ok_or_else(|| bad(what))?;
            let id = KeyId::parse(id).ok_or_else(|| bad(what))?;
            decrypt(self.cipher(id, what)?, &decode(body)?, aad).ok_or_else(|| bad(what))?
        } else if let Some(body) = sealed.strip_prefix(SEALED_PREFIX_V1) {
            self.open_any(&decode(body)?, aad)
                .ok_or_else(|| bad(what))?
        } else {
            return Err(bad(what));
        };
        String::from_utf8(clear).map_err(|_| bad(what))
    }

    /// Opens nonce ‖ ciphertext ‖ tag of the first scheme with whichever key sealed it.
    fn open_any(&self, bytes: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        self.ring.iter().find_map(|(_, c)| decrypt(c, bytes, aad))
    }

    /// Seals a whole file of personal data (the gateway's identities of a batch) the
    /// same way: nonce ‖ ciphertext ‖ tag, `aad` naming what it is and whose.
    pub fn seal_bytes(&self, clear: &[u8], aad: &[u8]) -> Vec<u8> {
        let (id, cipher) = &self.ring[0];
        let nonce: [u8; NONCE_LEN] = rand::random();
        let sealed = cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: clear, aad })
            .expect("AES-GCM encryption fails only past 64 GiB");
        let mut bytes = Vec::with_capacity(8 + NONCE_LEN + sealed.len());
        bytes.extend_from_slice(FILE_MAGIC);
        bytes.extend_from_slice(&id.0);
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&sealed);
        bytes
    }

    /// Opens what [`Sealer::seal_bytes`] sealed under the same `aad`.
    pub fn open_bytes(&self, sealed: &[u8], aad: &[u8], what: &str) -> Result<Vec<u8>, AllocError> {
        match sealed.strip_prefix(FILE_MAGIC) {
            Some(rest) if rest.len() >= 4 => {
                let (id, body) = rest.split_at(4);
                let id = KeyId([id[0], id[1], id[2], id[3]]);
                decrypt(self.cipher(id, what)?, body, aad).ok_or_else(|| bad(what))
            }
            // The first scheme (or a file that only starts like a header by chance).
            _ => self.open_any(sealed, aad).ok_or_else(|| bad(what)),
        }
    }

    /// The entry as stored: phone and card number encrypted, the rest as is.
    pub fn seal_entry(&self, entry: &SigningEntry) -> SigningEntry {
        let mut out = entry.clone();
        if let SigningEvent::DetailsFilled { details } = &mut out.event {
            details.phone = Phone::new(self.seal(details.phone.as_str(), AAD_PHONE));
            details.card_number =
                CardNumber::new(self.seal(details.card_number.as_str(), AAD_CARD));
        }
        out
    }

    /// The entry as read back: phone and card number decrypted.
    pub fn open_entry(&self, mut entry: SigningEntry) -> Result<SigningEntry, AllocError> {
        if let SigningEvent::DetailsFilled { details } = &mut entry.event {
            details.phone = Phone::new(self.open(details.phone.as_str(), AAD_PHONE, "phone")?);
            details.card_number = CardNumber::new(self.open(
                details.card_number.as_str(),
                AAD_CARD,
                "card number",
            )?);
        }
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 32] = [1; 32];
    const B: [u8; 32] = [2; 32];

    fn ring(current: [u8; 32], old: &[[u8; 32]]) -> Sealer {
        Sealer::new(&SigningOptions::new(current).with_old_keys(old.to_vec()))
    }

    /// A value sealed the first way (`aes1:`, no key id), as stored before rotation.
    fn v1(key: [u8; 32], clear: &str, aad: &[u8]) -> String {
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key));
        let nonce = [9u8; NONCE_LEN];
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: clear.as_bytes(),
                    aad,
                },
            )
            .unwrap();
        let bytes = [&nonce[..], &ct].concat();
        format!(
            "{SEALED_PREFIX_V1}{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )
    }

    #[test]
    fn a_value_names_its_key_and_opens_after_a_rotation_only_while_that_key_is_kept() {
        let sealed = ring(A, &[]).seal("13800138000", AAD_PHONE);
        let id = KeyId::of(&A).to_string();
        assert!(sealed.starts_with(&format!("aes2:{id}:")), "{sealed}");
        assert!(!sealed.contains("13800138000"));
        // Rotated: B seals, A still opens what it sealed.
        let rotated = ring(B, &[A]);
        assert_eq!(
            rotated.open(&sealed, AAD_PHONE, "phone").unwrap(),
            "13800138000"
        );
        let new = rotated.seal("13800138000", AAD_PHONE);
        assert!(
            new.starts_with(&format!("aes2:{}:", KeyId::of(&B))),
            "{new}"
        );
        // A dropped too early: the error names the missing key, never a wrong value.
        let err = ring(B, &[]).open(&sealed, AAD_PHONE, "phone").unwrap_err();
        assert!(err.to_string().contains(&id), "{err}");
        assert!(err.to_string().contains("--old-data-key-file"), "{err}");
        // The field's name still binds: a phone is not a card number under any key.
        assert!(rotated.open(&sealed, AAD_CARD, "card number").is_err());
    }

    #[test]
    fn values_and_files_of_the_first_scheme_open_with_any_key_of_the_ring() {
        let old = v1(A, "6222020200112233445", AAD_CARD);
        assert_eq!(
            ring(B, &[A]).open(&old, AAD_CARD, "card number").unwrap(),
            "6222020200112233445"
        );
        assert!(ring(B, &[]).open(&old, AAD_CARD, "card number").is_err());
        // A file: nonce ‖ ciphertext ‖ tag with no header.
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&A));
        let nonce = [3u8; NONCE_LEN];
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: b"book",
                    aad: b"ids",
                },
            )
            .unwrap();
        let file = [&nonce[..], &ct].concat();
        assert_eq!(
            ring(B, &[A]).open_bytes(&file, b"ids", "ids").unwrap(),
            b"book"
        );
        assert!(ring(B, &[]).open_bytes(&file, b"ids", "ids").is_err());
    }

    #[test]
    fn a_file_names_its_key_and_damage_or_a_wrong_aad_is_refused() {
        let sealed = ring(A, &[]).seal_bytes(b"identities", b"batch 1");
        assert_eq!(&sealed[..4], FILE_MAGIC);
        assert_eq!(&sealed[4..8], &KeyId::of(&A).0);
        let rotated = ring(B, &[A]);
        assert_eq!(
            rotated.open_bytes(&sealed, b"batch 1", "ids").unwrap(),
            b"identities"
        );
        assert!(rotated.open_bytes(&sealed, b"batch 2", "ids").is_err());
        let mut damaged = sealed.clone();
        *damaged.last_mut().unwrap() ^= 1;
        assert!(rotated.open_bytes(&damaged, b"batch 1", "ids").is_err());
        let err = ring(B, &[])
            .open_bytes(&sealed, b"batch 1", "ids")
            .unwrap_err();
        assert!(
            err.to_string().contains(&KeyId::of(&A).to_string()),
            "{err}"
        );
    }

    #[test]
    fn the_debug_form_names_keys_by_id_only() {
        let o = SigningOptions::new(A).with_old_keys(vec![B]);
        let d = format!("{o:?}");
        assert!(
            d.contains(&KeyId::of(&A).to_string()) && d.contains(&KeyId::of(&B).to_string()),
            "{d}"
        );
        assert!(!d.contains("[1, 1"), "{d}");
    }
}
