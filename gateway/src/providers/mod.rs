//! The outside services signing needs, as traits: face verification ([`face`]) and
//! payment ([`payment`]), each with a sandbox adapter (沙箱) for the demo and tests, and
//! a real vendor's signed-HTTP adapter: [`wechat_pay`] (微信支付 APIv3 Native), [`alipay`]
//! (支付宝 当面付 precreate) and [`tencent_face`] (腾讯云人脸核身). [`keys`] reads the vendors' RSA keys.

pub mod alipay;
pub mod certificate;
pub mod face;
pub mod keys;
pub mod payment;
pub mod tencent_face;
pub mod wechat_pay;

/// A provider call that failed (network, refusal, bad answer).
#[derive(Debug, thiserror::Error)]
#[error("provider: {0}")]
pub struct ProviderError(pub String);

/// HMAC-SHA256 (RFC 2104) of `msg` under `key`.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner);
    let mut out = [0u8; 32];
    out.copy_from_slice(&outer.finalize());
    out
}

/// Equal without an early exit (a signature check must not leak where it differs).
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A random reference: `prefix` and 24 hex digits.
pub fn random_ref(prefix: &str) -> String {
    let r: [u8; 12] = rand::random();
    format!("{prefix}{}", hex::encode(r))
}

#[cfg(test)]
mod tests {
    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = super::hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
