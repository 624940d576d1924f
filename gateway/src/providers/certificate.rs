//! WeChat Pay's platform certificate (平台证书, `BEGIN CERTIFICATE`): parsed with
//! `x509-cert`, its RSA key used to verify the platform's signatures, its serial the
//! `Wechatpay-Serial` a signed answer or notification must name, and its validity dates
//! checked at every verification (a signature under a certificate that has expired, or
//! is not valid yet, is not believed).
//!
//! The certificate's own signature (by WeChat Pay's CA) is not checked here: the file is
//! the operator's, downloaded from the merchant platform or with WeChat's certificate
//! tool, like the public key it replaces.

use x509_cert::der::{oid::ObjectIdentifier, DecodePem};
use x509_cert::Certificate;
use xuanfang_hub::Millis;

use super::keys::RsaVerifier;
use super::ProviderError;

/// `rsaEncryption` (RFC 8017): the only key WeChat Pay's platform signs with (RSA2048).
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// A platform certificate, read.
pub struct PlatformCertificate {
    /// The serial number as WeChat Pay writes it in `Wechatpay-Serial`: upper-case hex
    /// without leading zero bytes (what `openssl x509 -serial` prints).
    pub serial: String,
    pub not_before: Millis,
    pub not_after: Millis,
    pub key: RsaVerifier,
}

impl std::fmt::Debug for PlatformCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformCertificate")
            .field("serial", &self.serial)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// Whether `pem` holds a certificate rather than a bare public key.
pub fn is_certificate(pem: &str) -> bool {
    pem.contains("-----BEGIN CERTIFICATE-----")
}

fn millis(t: &x509_cert::time::Time) -> Millis {
    Millis(i64::try_from(t.to_unix_duration().as_millis()).unwrap_or(i64::MAX))
}

impl PlatformCertificate {
    pub fn from_pem(pem: &str) -> Result<Self, ProviderError> {
        let cert = Certificate::from_pem(pem.trim())
            .map_err(|e| ProviderError(format!("platform certificate: {e}")))?;
        let tbs = cert.tbs_certificate();
        let spki = tbs.subject_public_key_info();
        if spki.algorithm.oid != RSA_ENCRYPTION {
            return Err(ProviderError(format!(
                "platform certificate: the key is {} (an RSA key is needed)",
                spki.algorithm.oid
            )));
        }
        let pkcs1 = spki.subject_public_key.raw_bytes();
        let key = RsaVerifier::from_pkcs1_der(pkcs1);
        let bytes = tbs.serial_number().as_bytes();
        let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        let serial = hex::encode_upper(&bytes[first..]);
        let validity = tbs.validity();
        Ok(Self {
            serial,
            not_before: millis(&validity.not_before),
            not_after: millis(&validity.not_after),
            key,
        })
    }

    /// Whether the certificate is valid at `now` (both ends included, as RFC 5280 says).
    pub fn valid_at(&self, now: Millis) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}
