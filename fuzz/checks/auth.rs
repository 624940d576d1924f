//! What the token and key-set fuzz targets check on any bytes, in both the fuzzer and the
//! corpus replay (`gateway/tests/fuzz_corpus.rs` includes this file).
//!
//! A token is verified the way every request's is ([`Auth::verify_until`]) by the three
//! kinds of verifier a deployment configures: an HS256 secret with issuer and audience
//! rules, a fixed RS256 public key, and a key set (RS256, ES256, EdDSA by `kid`). Nothing
//! may panic, and a token that verifies was signed with the key's own algorithm (never
//! `none`, never one the token picked). A key set is read with [`jwks::parse`]: nothing
//! may panic, and only the accepted kinds of key come out.

use std::sync::OnceLock;

use jsonwebtoken::{decode_header, Algorithm};
use xuanfang_gateway::auth::{jwks, Auth, JwksSource, JwksTiming, KeySet, TokenRules};

use super::runtime::block_on;

/// The HS256 secret of the seed tokens (test-only).
pub const SECRET: &[u8] = b"fuzz-secret-fuzz-secret-fuzz-sec";
pub const ISSUER: &str = "https://id.example";
pub const AUDIENCE: &str = "xuanfang";

struct Verifiers {
    hs256: Auth,
    rs256: Auth,
    set: Auth,
}

fn verifiers() -> &'static Verifiers {
    static V: OnceLock<Verifiers> = OnceLock::new();
    V.get_or_init(|| {
        let rules = TokenRules {
            issuer: Some(ISSUER.into()),
            audience: Some(AUDIENCE.into()),
            leeway_secs: 60,
        };
        let hs256 = Auth::hs256(SECRET).expect("secret").with_rules(rules);
        let rs256 = Auth::public_key(include_bytes!("keys/rsa-a.pub.pem"), Algorithm::RS256)
            .expect("public key");
        // The set is read from a file, as with `jwks_file`; a token naming an unknown
        // `kid` reads it again (rate limited) like a deployment would.
        let path =
            std::env::temp_dir().join(format!("xuanfang-fuzz-{}-jwks.json", std::process::id()));
        std::fs::write(&path, include_bytes!("keys/jwks.json")).expect("temp file");
        let set =
            block_on(KeySet::load(JwksSource::File(path), JwksTiming::default())).expect("key set");
        Verifiers {
            hs256,
            rs256,
            set: Auth::key_set(set),
        }
    })
}

/// One token, as sent in `Authorization: Bearer …` or `?token=`. Returns how many of
/// the three verifiers accepted it.
pub fn token(data: &[u8]) -> usize {
    let Ok(token) = std::str::from_utf8(data) else {
        return 0;
    };
    let v = verifiers();
    let accepted: [(&Auth, &[Algorithm]); 3] = [
        (&v.hs256, &[Algorithm::HS256]),
        (&v.rs256, &[Algorithm::RS256]),
        (
            &v.set,
            &[Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA],
        ),
    ];
    let mut verified = 0;
    for (auth, algs) in accepted {
        if block_on(auth.verify_until(token)).is_ok() {
            let header = decode_header(token).expect("a verified token has a header");
            assert!(algs.contains(&header.alg), "verified with {:?}", header.alg);
            verified += 1;
        }
    }
    verified
}

/// One key set document, as fetched from `jwks_url` or read from `jwks_file`. Returns
/// how many usable keys it holds.
pub fn key_set(data: &[u8]) -> usize {
    let Ok(keys) = jwks::parse(data) else {
        return 0;
    };
    assert!(!keys.is_empty(), "a set that parses holds a key");
    for key in keys.values() {
        assert!(
            matches!(
                key.alg,
                Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA
            ),
            "{:?} accepted",
            key.alg
        );
    }
    keys.len()
}
