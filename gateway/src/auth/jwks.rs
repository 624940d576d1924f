//! The identity platform's rotating public keys: a JSON Web Key Set (RFC 7517) from a URL
//! or a file, keys chosen by the token's `kid`.
//!
//! Platforms publish the next key before they sign with it and drop the old one later, so
//! the set is fetched again periodically (revoked keys go) and when a token names a `kid`
//! the set does not hold (a key published since the last fetch). Fetches on unknown `kid`s
//! are rate limited: anyone can send a token with a made-up `kid`, and the gateway must not
//! turn that into load on the platform.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};
use parking_lot::RwLock;

use super::AuthError;

/// The largest key set accepted (a set holds a few keys of a few hundred bytes each).
const MAX_SET_BYTES: usize = 256 * 1024;

/// Where the set comes from.
#[derive(Clone, Debug)]
pub enum JwksSource {
    /// `https://…/jwks.json` (or `http://` on a private network).
    Url(String),
    /// A file the deployment keeps up to date (read again like a URL).
    File(PathBuf),
}

/// How often the set is fetched.
#[derive(Clone, Copy, Debug)]
pub struct JwksTiming {
    /// A periodic fetch: drops revoked keys, picks up new ones.
    pub refresh_every: Duration,
    /// The least time between two fetches caused by unknown `kid`s.
    pub unknown_kid_interval: Duration,
}

impl Default for JwksTiming {
    fn default() -> Self {
        Self {
            refresh_every: Duration::from_secs(300),
            unknown_kid_interval: Duration::from_secs(30),
        }
    }
}

/// A usable key: the algorithm is the key's, never the token's (a token cannot pick how it
/// is checked).
#[derive(Clone)]
pub struct Key {
    pub decoding: DecodingKey,
    pub alg: Algorithm,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// The current keys by `kid`, and how to fetch them again.
pub struct KeySet {
    source: JwksSource,
    client: reqwest::Client,
    timing: JwksTiming,
    keys: RwLock<Arc<HashMap<String, Key>>>,
    /// Serialises fetches; holds when the last one caused by an unknown `kid` started.
    fetching: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("source", &self.source)
            .field("kids", &self.kids())
            .finish_non_exhaustive()
    }
}

impl KeySet {
    /// Fetches the set once (an error if that fails or it holds no usable key) and starts
    /// the periodic refresh, which ends when the set is dropped.
    pub async fn load(source: JwksSource, timing: JwksTiming) -> Result<Arc<Self>, AuthError> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| AuthError::Key(format!("http client: {e}")))?;
        let set = Arc::new(Self {
            source,
            client,
            timing,
            keys: RwLock::new(Arc::new(HashMap::new())),
            fetching: tokio::sync::Mutex::new(None),
        });
        let keys = set.fetch().await?;
        *set.keys.write() = Arc::new(keys);
        tokio::spawn(refresh_periodically(
            Arc::downgrade(&set),
            timing.refresh_every,
        ));
        Ok(set)
    }

    /// The key for `kid`, fetching the set again (rate limited) when it is unknown. A token
    /// without `kid` is accepted only while the set holds exactly one key.
    pub async fn key(&self, kid: Option<&str>) -> Option<Key> {
        if let Some(k) = self.lookup(kid) {
            return Some(k);
        }
        let kid = kid?;
        let mut last = self.fetching.lock().await;
        // Another request may have fetched it while this one waited.
        if let Some(k) = self.lookup(Some(kid)) {
            return Some(k);
        }
        if last.is_some_and(|t| t.elapsed() < self.timing.unknown_kid_interval) {
            return None;
        }
        *last = Some(Instant::now());
        self.replace().await;
        self.lookup(Some(kid))
    }

    /// The `kid`s held now, sorted.
    pub fn kids(&self) -> Vec<String> {
        let mut kids: Vec<String> = self.keys.read().keys().cloned().collect();
        kids.sort();
        kids
    }

    fn lookup(&self, kid: Option<&str>) -> Option<Key> {
        let keys = self.keys.read();
        match kid {
            Some(kid) => keys.get(kid).cloned(),
            None if keys.len() == 1 => keys.values().next().cloned(),
            None => None,
        }
    }

    /// Fetches and swaps the set in; a failed fetch keeps the keys held (logged).
    async fn replace(&self) {
        match self.fetch().await {
            Ok(keys) => {
                tracing::debug!(kids = ?keys.keys().collect::<Vec<_>>(), "jwks refreshed");
                *self.keys.write() = Arc::new(keys);
            }
            Err(e) => tracing::warn!(error = %e, "jwks refresh failed; keeping the keys held"),
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, Key>, AuthError> {
        let bytes = match &self.source {
            JwksSource::File(path) => tokio::fs::read(path)
                .await
                .map_err(|e| AuthError::Key(format!("{}: {e}", path.display())))?,
            JwksSource::Url(url) => self.get(url).await?,
        };
        if bytes.len() > MAX_SET_BYTES {
            return Err(AuthError::Key(format!(
                "key set is {} bytes, more than {MAX_SET_BYTES}",
                bytes.len()
            )));
        }
        parse(&bytes)
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, AuthError> {
        let fail = |e: String| AuthError::Key(format!("{url}: {e}"));
        let mut resp = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(fail(format!("status {}", resp.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| fail(e.to_string()))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_SET_BYTES {
                return Err(fail(format!("more than {MAX_SET_BYTES} bytes")));
            }
        }
        Ok(body)
    }
}

async fn refresh_periodically(set: Weak<KeySet>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(set) = set.upgrade() else { return };
        let _one_at_a_time = set.fetching.lock().await;
        set.replace().await;
    }
}

/// The usable signing keys of a set. Keys for other uses, without `kid` in a set of
/// several, or of kinds not accepted are skipped; a set with none left is an error.
pub fn parse(bytes: &[u8]) -> Result<HashMap<String, Key>, AuthError> {
    let set: JwkSet = serde_json::from_slice(bytes)
        .map_err(|e| AuthError::Key(format!("not a JSON Web Key Set: {e}")))?;
    let several = set.keys.len() > 1;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let kid = jwk.common.key_id.clone();
        match key_of(jwk) {
            Ok(key) => match kid {
                Some(kid) => {
                    keys.insert(kid, key);
                }
                None if !several => {
                    keys.insert(String::new(), key);
                }
                None => tracing::warn!("jwks: a key without kid in a set of several, skipped"),
            },
            Err(why) => tracing::warn!(kid = ?kid, "jwks: key skipped: {why}"),
        }
    }
    if keys.is_empty() {
        return Err(AuthError::Key(
            "the key set holds no usable signing key".into(),
        ));
    }
    Ok(keys)
}

/// RS256 (RSA), ES256 (EC P-256) and EdDSA (Ed25519) public keys. Symmetric (`oct`) keys
/// are refused: a key set is public, so a shared secret in it signs for anyone.
fn key_of(jwk: &Jwk) -> Result<Key, String> {
    if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
        return Err("not a signing key".into());
    }
    let alg = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        AlgorithmParameters::OctetKey(_) => return Err("symmetric keys are not accepted".into()),
        _ => return Err("unsupported key type or curve".into()),
    };
    let declared = jwk.common.key_algorithm.map(|a| match a {
        KeyAlgorithm::RS256 => Some(Algorithm::RS256),
        KeyAlgorithm::ES256 => Some(Algorithm::ES256),
        KeyAlgorithm::EdDSA => Some(Algorithm::EdDSA),
        _ => None,
    });
    match declared {
        None => {}
        Some(Some(a)) if a == alg => {}
        Some(_) => return Err(format!("alg does not match the key (expected {alg:?})")),
    }
    let decoding = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    Ok(Key { decoding, alg })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real RSA public key (the tests' fixture), as a JWK object.
    fn rsa() -> String {
        let all: serde_json::Value = serde_json::from_str(include_str!(
            "../../../tests/tests/fixtures/jwks/public.json"
        ))
        .unwrap();
        let mut k = all["rsa-a"].clone();
        let o = k.as_object_mut().unwrap();
        o.remove("alg");
        o.remove("use");
        o.insert("kid".into(), "r".into());
        k.to_string()
    }

    #[test]
    fn symmetric_keys_in_a_public_set_are_refused() {
        let oct = br#"{"keys":[{"kty":"oct","kid":"s","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}]}"#;
        assert!(matches!(parse(oct), Err(AuthError::Key(_))));
    }

    #[test]
    fn a_key_whose_declared_alg_contradicts_its_type_is_skipped() {
        let lying = rsa().replace(r#""kty""#, r#""alg":"ES256","kty""#);
        let set = format!(r#"{{"keys":[{lying}]}}"#);
        assert!(parse(set.as_bytes()).is_err());
        let honest = format!(
            r#"{{"keys":[{}]}}"#,
            rsa().replace(r#""kty""#, r#""alg":"RS256","kty""#)
        );
        let keys = parse(honest.as_bytes()).unwrap();
        assert_eq!(keys["r"].alg, Algorithm::RS256);
    }

    #[test]
    fn encryption_keys_and_unknown_kinds_are_skipped_not_fatal() {
        let enc = rsa().replace(r#""kid":"r""#, r#""kid":"e","use":"enc""#);
        let set = format!(r#"{{"keys":[{enc},{}]}}"#, rsa());
        let keys = parse(set.as_bytes()).unwrap();
        assert_eq!(keys.keys().collect::<Vec<_>>(), ["r"]);
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let e = parse(b"<html>").unwrap_err().to_string();
        assert!(e.contains("not a JSON Web Key Set"), "{e}");
    }
}
