//! RSA keys of the vendors' signed HTTP (WeChat Pay, Alipay): PEM files read into ring's
//! key types. ring is already compiled for the identity tokens (jsonwebtoken) and TLS
//! (rustls), so no RSA crate is added.

use base64::Engine;
use ring::signature::{self, RsaKeyPair, UnparsedPublicKey};

use super::ProviderError;

/// The DER inside a PEM block (`-----BEGIN …-----`), whatever its label.
pub fn pem_der(pem: &str) -> Result<Vec<u8>, ProviderError> {
    let b64: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect();
    if b64.is_empty() {
        return Err(ProviderError("not a PEM block".into()));
    }
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| ProviderError(format!("PEM: {e}")))
}

/// One DER element: (tag, contents, rest).
fn der_next(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    let (&l0, mut b) = b.split_first()?;
    let len = if l0 < 0x80 {
        usize::from(l0)
    } else {
        let n = usize::from(l0 & 0x7f);
        if n == 0 || n > 4 || b.len() < n {
            return None;
        }
        let len = b[..n]
            .iter()
            .fold(0usize, |a, &x| (a << 8) | usize::from(x));
        b = &b[n..];
        len
    };
    (b.len() >= len).then(|| (tag, &b[..len], &b[len..]))
}

/// The PKCS#1 `RSAPublicKey` inside a `SubjectPublicKeyInfo` (`BEGIN PUBLIC KEY`), which
/// is what ring verifies with.
pub fn spki_rsa_public_key(spki: &[u8]) -> Result<Vec<u8>, ProviderError> {
    let bad = || ProviderError("not an RSA SubjectPublicKeyInfo".into());
    let (0x30, seq, _) = der_next(spki).ok_or_else(bad)? else {
        return Err(bad());
    };
    let (0x30, _alg, rest) = der_next(seq).ok_or_else(bad)? else {
        return Err(bad());
    };
    let (0x03, bits, _) = der_next(rest).ok_or_else(bad)? else {
        return Err(bad());
    };
    match bits.split_first() {
        Some((0, key)) => Ok(key.to_vec()),
        _ => Err(bad()),
    }
}

/// A merchant's private key (PKCS#8 PEM, `BEGIN PRIVATE KEY`): signs requests.
pub struct RsaSigner(RsaKeyPair);

impl RsaSigner {
    pub fn from_pem(pem: &str) -> Result<Self, ProviderError> {
        let der = pem_der(pem)?;
        RsaKeyPair::from_pkcs8(&der)
            .map(RsaSigner)
            .map_err(|e| ProviderError(format!("private key: {e}")))
    }

    /// RSA-SHA256 (PKCS#1 v1.5) of `msg`, base64.
    pub fn sign_b64(&self, msg: &[u8]) -> Result<String, ProviderError> {
        let mut sig = vec![0u8; self.0.public().modulus_len()];
        self.0
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                msg,
                &mut sig,
            )
            .map_err(|_| ProviderError("RSA signing failed".into()))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(sig))
    }
}

impl std::fmt::Debug for RsaSigner {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RsaSigner(…)")
    }
}

/// A vendor's public key (`BEGIN PUBLIC KEY`): checks its signatures.
#[derive(Clone)]
pub struct RsaVerifier(Vec<u8>);

impl RsaVerifier {
    pub fn from_pem(pem: &str) -> Result<Self, ProviderError> {
        spki_rsa_public_key(&pem_der(pem)?).map(RsaVerifier)
    }

    /// The key from its PKCS#1 `RSAPublicKey` DER (a certificate's key); a bad key
    /// verifies nothing.
    pub fn from_pkcs1_der(der: &[u8]) -> Self {
        RsaVerifier(der.to_vec())
    }

    /// Whether `sig_b64` is an RSA-SHA256 signature of `msg` by this key.
    pub fn verify_b64(&self, msg: &[u8], sig_b64: &str) -> bool {
        let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(sig_b64.trim()) else {
            return false;
        };
        UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &self.0)
            .verify(msg, &sig)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = include_str!("../../../tests/tests/fixtures/vendor/merchant_key.pem");
    const PUB: &str = include_str!("../../../tests/tests/fixtures/vendor/merchant_pub.pem");
    const OTHER_PUB: &str = include_str!("../../../tests/tests/fixtures/vendor/platform_pub.pem");

    #[test]
    fn a_signature_verifies_with_its_public_key_only() {
        let s = RsaSigner::from_pem(KEY).unwrap();
        let sig = s.sign_b64(b"GET\n/v3/x\n1\nn\n\n").unwrap();
        assert!(RsaVerifier::from_pem(PUB)
            .unwrap()
            .verify_b64(b"GET\n/v3/x\n1\nn\n\n", &sig));
        assert!(!RsaVerifier::from_pem(PUB)
            .unwrap()
            .verify_b64(b"GET\n/v3/y\n1\nn\n\n", &sig));
        assert!(!RsaVerifier::from_pem(OTHER_PUB)
            .unwrap()
            .verify_b64(b"GET\n/v3/x\n1\nn\n\n", &sig));
    }

    /// The signature is the standard RSA-SHA256 one: openssl (another implementation)
    /// accepts it.
    #[test]
    fn openssl_accepts_the_signature() {
        let dir = tempfile::tempdir().unwrap();
        let msg = "POST\n/v3/pay/transactions/native\n1554208460\nabc\n{}\n";
        let sig = RsaSigner::from_pem(KEY)
            .unwrap()
            .sign_b64(msg.as_bytes())
            .unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(sig)
            .unwrap();
        std::fs::write(dir.path().join("msg"), msg).unwrap();
        std::fs::write(dir.path().join("sig"), raw).unwrap();
        std::fs::write(dir.path().join("pub.pem"), PUB).unwrap();
        let out = std::process::Command::new("openssl")
            .current_dir(dir.path())
            .args([
                "dgst",
                "-sha256",
                "-verify",
                "pub.pem",
                "-signature",
                "sig",
                "msg",
            ])
            .output()
            .expect("openssl (the test's independent RSA implementation)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    #[test]
    fn garbage_is_not_a_key() {
        assert!(RsaVerifier::from_pem(
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"
        )
        .is_err());
        assert!(RsaSigner::from_pem("nothing").is_err());
    }
}
