//! What the vendors' stand-in servers of the `vendor_*` tests sign and check with:
//! RSA-SHA256 (PKCS#1 v1.5) over the test-only keys in `fixtures/vendor/`, with ring.

use base64::Engine;

pub fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

pub fn der_of(pem: &str) -> Vec<u8> {
    let s: String = (pem.lines()).filter(|l| !l.starts_with("-----")).collect();
    b64().decode(s).unwrap()
}

pub fn rsa_sign(pem: &str, msg: &[u8]) -> String {
    use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
    let key = RsaKeyPair::from_pkcs8(&der_of(pem)).unwrap();
    let mut sig = vec![0; key.public().modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        msg,
        &mut sig,
    )
    .unwrap();
    b64().encode(sig)
}

/// RSA-SHA256 check with a `BEGIN PUBLIC KEY` PEM (the SPKI's key is its last 270 bytes
/// for a 2048-bit key with exponent 65537: the PKCS#1 `RSAPublicKey` ring wants).
pub fn rsa_verify(pub_pem: &str, msg: &[u8], sig_b64: &str) -> bool {
    use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
    let spki = der_of(pub_pem);
    let pkcs1 = &spki[spki.len() - 270..];
    let Ok(sig) = b64().decode(sig_b64) else {
        return false;
    };
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, pkcs1)
        .verify(msg, &sig)
        .is_ok()
}
