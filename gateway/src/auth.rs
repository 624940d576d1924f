//! Who is connecting: tokens of the identity platform (JWT), checked on every request.
//!
//! The hub never sees passwords. It verifies a signed token naming a family or an
//! operator: HS256 with a shared secret, RS256 / EdDSA with the platform's public key, or
//! the platform's rotating key set ([`jwks`]: RS256, ES256, EdDSA chosen by `kid`). The
//! issuer and audience are checked when configured ([`TokenRules`]). Expiry is judged on
//! the [`Auth`]'s clock (the system's, or a test's), and a WebSocket that outlives its
//! token is warned and closed on that clock by [`expiry`].

pub mod expiry;
pub mod jwks;

use std::sync::Arc;

use jsonwebtoken::{
    decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use serde::{Deserialize, Serialize};
use xuanfang_hub::{Clock, ErrorCode, FamilyId, Millis, SystemClock};

pub use jwks::{JwksSource, JwksTiming, KeySet};

/// What a token allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Family,
    Operator,
}

/// The claims xuanfang reads. `sub` is the family id for family tokens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    #[serde(default)]
    pub iat: u64,
}

/// The verified caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    Family(FamilyId),
    Operator(String),
}

/// The shortest HS256 secret accepted: 32 bytes, the size of the SHA-256 output (RFC 7518
/// §3.2 requires a key at least that long). A shorter one can be guessed offline from
/// any one token, and with it anyone can mint operator tokens.
pub const MIN_HS256_SECRET: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("token expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("bad key: {0}")]
    Key(String),
    #[error("minting needs the shared secret")]
    CannotMint,
    #[error(
        "the HS256 secret is {0} bytes long; it needs at least {MIN_HS256_SECRET} bytes \
         (e.g. `openssl rand -hex 32`)"
    )]
    WeakSecret(usize),
}

impl AuthError {
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthError::Expired => ErrorCode::TokenExpired,
            _ => ErrorCode::Unauthorized,
        }
    }
}

/// What a token must say besides its signature, as the identity platform issues it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenRules {
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud` (one of the token's), when set; without it `aud` is not checked.
    pub audience: Option<String>,
    /// Seconds of clock difference forgiven on `exp` and `nbf`.
    pub leeway_secs: u64,
}

/// Where verifying keys come from.
#[derive(Clone)]
enum Keys {
    /// One key, one algorithm (a shared secret or a PEM public key).
    Fixed(DecodingKey, Algorithm),
    /// The platform's key set, by `kid`.
    Set(Arc<KeySet>),
}

/// How tokens are checked (and, with a shared secret, minted).
#[derive(Clone)]
pub struct Auth {
    keys: Keys,
    encoding: Option<EncodingKey>,
    rules: TokenRules,
    /// The clock `exp` is judged (and minted) on: the system's, or a test's.
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = match &self.keys {
            Keys::Fixed(_, alg) => format!("{alg:?}"),
            Keys::Set(set) => format!("jwks {:?}", set.kids()),
        };
        f.debug_struct("Auth")
            .field("keys", &keys)
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// HS256 with a shared secret: verifies and mints. Refuses a secret shorter than
    /// [`MIN_HS256_SECRET`] bytes.
    pub fn hs256(secret: &[u8]) -> Result<Self, AuthError> {
        if secret.len() < MIN_HS256_SECRET {
            return Err(AuthError::WeakSecret(secret.len()));
        }
        Ok(Self {
            keys: Keys::Fixed(DecodingKey::from_secret(secret), Algorithm::HS256),
            encoding: Some(EncodingKey::from_secret(secret)),
            rules: TokenRules::default(),
            clock: Arc::new(SystemClock),
        })
    }

    /// The identity platform's public key (PEM): RS256, ES256 or EdDSA. Verifies only.
    pub fn public_key(pem: &[u8], alg: Algorithm) -> Result<Self, AuthError> {
        let decoding = match alg {
            Algorithm::RS256 => DecodingKey::from_rsa_pem(pem),
            Algorithm::ES256 => DecodingKey::from_ec_pem(pem),
            Algorithm::EdDSA => DecodingKey::from_ed_pem(pem),
            other => return Err(AuthError::Key(format!("unsupported algorithm {other:?}"))),
        }
        .map_err(|e| AuthError::Key(e.to_string()))?;
        Ok(Self {
            keys: Keys::Fixed(decoding, alg),
            encoding: None,
            rules: TokenRules::default(),
            clock: Arc::new(SystemClock),
        })
    }

    /// The identity platform's key set (see [`jwks`]). Verifies only.
    pub fn key_set(set: Arc<KeySet>) -> Self {
        Self {
            keys: Keys::Set(set),
            encoding: None,
            rules: TokenRules::default(),
            clock: Arc::new(SystemClock),
        }
    }

    /// The same keys with other claim rules.
    pub fn with_rules(mut self, rules: TokenRules) -> Self {
        self.rules = rules;
        self
    }

    /// The same keys on another clock (tests move token time by hand with a
    /// `ManualClock`): verifying, [`Auth::expired`], minting and the socket's expiry
    /// timers all read it.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Now on this `Auth`'s clock.
    pub fn now(&self) -> Millis {
        self.clock.now()
    }

    /// The clock tokens are judged on.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    fn now_secs(&self) -> u64 {
        u64::try_from(self.clock.now().0 / 1000).unwrap_or(0)
    }

    /// The first moment (ms) at which a token with this `exp` counts as expired by
    /// [`Auth::expired`]: `exp + leeway` whole seconds have fully passed.
    pub fn expires_at(&self, exp: u64) -> Millis {
        let secs = exp.saturating_add(self.rules.leeway_secs).saturating_add(1);
        Millis(i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX))
    }

    /// The caller a token names, once its signature, expiry and (when configured) issuer
    /// and audience check out. With a key set, an unknown `kid` may fetch the set again.
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        self.verify_until(token).await.map(|(who, _)| who)
    }

    /// Like [`Auth::verify`], with the token's `exp`: a WebSocket outlives the check at
    /// its upgrade, so it asks [`Auth::expired`] again before each action (and a
    /// `refresh` on the socket is checked by this very function, as the upgrade was).
    pub async fn verify_until(&self, token: &str) -> Result<(Identity, u64), AuthError> {
        let invalid = |e: jsonwebtoken::errors::Error| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
            _ => AuthError::Invalid(e.to_string()),
        };
        let header = decode_header(token).map_err(invalid)?;
        let (key, alg) = match &self.keys {
            Keys::Fixed(key, alg) => (key.clone(), *alg),
            Keys::Set(set) => {
                let k = set.key(header.kid.as_deref()).await.ok_or_else(|| {
                    AuthError::Invalid(format!("unknown key id {:?}", header.kid))
                })?;
                (k.decoding, k.alg)
            }
        };
        // The key decides the algorithm; a token naming another (e.g. HS256 with an RSA
        // key's public bytes as the secret) fails here.
        let data = decode::<Claims>(token, &key, &self.validation(alg)).map_err(invalid)?;
        let c = data.claims;
        // jsonwebtoken reads the system clock; expiry is judged on ours (same rule).
        if self.expired(c.exp) {
            return Err(AuthError::Expired);
        }
        let who = match c.role {
            Role::Family => Identity::Family(FamilyId(c.sub)),
            Role::Operator => Identity::Operator(c.sub),
        };
        Ok((who, c.exp))
    }

    /// Whether a token with this `exp` has expired by now: the rule [`Auth::verify`]
    /// applies (jsonwebtoken's: `exp + leeway` before now, in whole seconds).
    pub fn expired(&self, exp: u64) -> bool {
        exp.saturating_add(self.rules.leeway_secs) < self.now_secs()
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.rules.leeway_secs;
        // `exp` must be present (below) and is judged by `expired`, on this clock.
        v.validate_exp = false;
        let mut required = vec!["exp", "sub"];
        if let Some(iss) = &self.rules.issuer {
            v.set_issuer(&[iss]);
            required.push("iss");
        }
        match &self.rules.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                required.push("aud");
            }
            None => v.validate_aud = false,
        }
        v.set_required_spec_claims(&required);
        v
    }

    /// Whether this `Auth` can mint tokens (it holds the shared secret).
    pub fn can_mint(&self) -> bool {
        self.encoding.is_some()
    }

    /// Mints a token valid for `ttl_secs` (demo, tests, the load tool, ops).
    pub fn mint(&self, sub: &str, role: Role, ttl_secs: u64) -> Result<String, AuthError> {
        let key = self.encoding.as_ref().ok_or(AuthError::CannotMint)?;
        let now = self.now_secs();
        let claims = Claims {
            sub: sub.to_owned(),
            role,
            exp: now + ttl_secs,
            iat: now,
        };
        // Minted tokens pass this gateway's own rules.
        let mut claims =
            serde_json::to_value(&claims).map_err(|e| AuthError::Invalid(e.to_string()))?;
        if let Some(iss) = &self.rules.issuer {
            claims["iss"] = iss.as_str().into();
        }
        if let Some(aud) = &self.rules.audience {
            claims["aud"] = aud.as_str().into();
        }
        encode(&Header::new(Algorithm::HS256), &claims, key)
            .map_err(|e| AuthError::Invalid(e.to_string()))
    }
}

/// A token from `Authorization: Bearer ...`, or the `token` query parameter (browsers
/// cannot set headers on a WebSocket).
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const OTHER: &[u8] = b"fedcba9876543210fedcba9876543210";

    #[tokio::test]
    async fn minted_family_token_verifies_as_that_family() {
        let auth = Auth::hs256(SECRET).unwrap();
        let t = auth.mint("F0001", Role::Family, 60).unwrap();
        assert_eq!(
            auth.verify(&t).await.unwrap(),
            Identity::Family(FamilyId::from("F0001"))
        );
    }

    #[tokio::test]
    async fn token_signed_with_another_secret_is_refused() {
        let t = Auth::hs256(OTHER)
            .unwrap()
            .mint("F0001", Role::Family, 60)
            .unwrap();
        assert!(matches!(
            Auth::hs256(SECRET).unwrap().verify(&t).await,
            Err(AuthError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn expired_token_is_refused_as_expired() {
        let auth = Auth::hs256(SECRET).unwrap();
        let key = EncodingKey::from_secret(SECRET);
        let claims = Claims {
            sub: "F1".into(),
            role: Role::Family,
            exp: 1_000,
            iat: 0,
        };
        let t = encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap();
        assert!(matches!(auth.verify(&t).await, Err(AuthError::Expired)));
    }

    #[tokio::test]
    async fn a_token_expires_by_the_rule_verify_applies() {
        let auth = Auth::hs256(SECRET).unwrap();
        let t = auth.mint("F1", Role::Family, 3600).unwrap();
        let (who, exp) = auth.verify_until(&t).await.unwrap();
        assert_eq!(who, Identity::Family(FamilyId::from("F1")));
        assert!(!auth.expired(exp));
        assert!(auth.expired(1_000));
        let lenient = auth.with_rules(TokenRules {
            leeway_secs: u64::MAX,
            ..TokenRules::default()
        });
        assert!(!lenient.expired(1_000), "the leeway counts");
    }

    #[test]
    fn an_hs256_secret_shorter_than_32_bytes_is_refused() {
        for weak in [&b""[..], b"a", b"secret", &[7u8; MIN_HS256_SECRET - 1]] {
            let refused = Auth::hs256(weak).map(|_| ());
            assert!(
                matches!(refused, Err(AuthError::WeakSecret(n)) if n == weak.len()),
                "{} bytes: {refused:?}",
                weak.len()
            );
        }
        let e = Auth::hs256(b"a").unwrap_err().to_string();
        assert!(e.contains("at least 32"), "{e}");
        assert!(Auth::hs256(&[7u8; MIN_HS256_SECRET]).is_ok());
    }
}
