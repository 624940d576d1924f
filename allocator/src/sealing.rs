//! Personal data at rest: the card number and phone of a signing record are stored
//! encrypted (AES-256-GCM) in every engine, the embedded journal and Redis alike.
//!
//! Why here and not in hub: the hub's events carry the values as given (the rules need
//! them: Luhn, "the same details again change nothing"), and storing is the engine's
//! job. So an engine seals an entry just before it writes it ([`Sealer::seal_entry`])
//! and opens it just after it reads it ([`Sealer::open_entry`]); memory, replies and
//! views hold the clear record (views show only the masked forms).
//!
//! A sealed value is `aes1:` + base64(nonce ‖ ciphertext ‖ tag), with a random 96-bit
//! nonce per value (never reused under one key in practice: 2^-32 collision odds only
//! after ~2^32 values) and the field's name as associated data, so a sealed phone cannot
//! be passed off as a card number. It goes where the clear value was ([`Phone`] and
//! [`CardNumber`] are plain strings on the wire), so the stored entry keeps the shape of
//! a [`SigningEntry`].

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use xuanfang_hub::signing::{CardNumber, Phone, SigningEntry, SigningEvent};

use crate::contract::AllocError;

/// The prefix of a sealed value (the scheme's version).
pub const SEALED_PREFIX: &str = "aes1:";
const NONCE_LEN: usize = 12;
const AAD_PHONE: &[u8] = b"xuanfang signing phone";
const AAD_CARD: &[u8] = b"xuanfang signing card_number";

/// How an engine stores signing: the key that encrypts personal data at rest.
#[derive(Clone)]
pub struct SigningOptions {
    /// AES-256 key for card numbers and phones. From the deployment's secret store;
    /// losing it makes stored details unreadable, so rotate by re-encrypting, never by
    /// replacing.
    pub data_key: [u8; 32],
}

impl fmt::Debug for SigningOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningOptions")
            .field("data_key", &"<redacted>")
            .finish()
    }
}

/// Seals and opens the personal fields of signing entries.
#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
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

impl Sealer {
    pub fn new(options: &SigningOptions) -> Self {
        Self {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&options.data_key)),
        }
    }

    fn seal(&self, clear: &str, aad: &[u8]) -> String {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let sealed = self
            .cipher
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
            "{SEALED_PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )
    }

    fn open(&self, sealed: &str, aad: &[u8], what: &str) -> Result<String, AllocError> {
        let body = sealed
            .strip_prefix(SEALED_PREFIX)
            .ok_or_else(|| bad(what))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| bad(what))?;
        if bytes.len() < NONCE_LEN {
            return Err(bad(what));
        }
        let (nonce, ct) = bytes.split_at(NONCE_LEN);
        let clear = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| bad(what))?;
        String::from_utf8(clear).map_err(|_| bad(what))
    }

    /// Seals a whole file of personal data (the gateway's identities of a batch) the
    /// same way: nonce ‖ ciphertext ‖ tag, `aad` naming what it is and whose.
    pub fn seal_bytes(&self, clear: &[u8], aad: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: clear, aad })
            .expect("AES-GCM encryption fails only past 64 GiB");
        let mut bytes = Vec::with_capacity(NONCE_LEN + sealed.len());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&sealed);
        bytes
    }

    /// Opens what [`Sealer::seal_bytes`] sealed under the same `aad`.
    pub fn open_bytes(&self, sealed: &[u8], aad: &[u8], what: &str) -> Result<Vec<u8>, AllocError> {
        if sealed.len() < NONCE_LEN {
            return Err(bad(what));
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| bad(what))
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
