//! WeChat Pay's platform key given as its X.509 certificate (平台证书): the adapter takes
//! the key and the serial from it (`Wechatpay-Serial` must be that serial), refuses a
//! serial configured otherwise, an expired certificate, a non-RSA one, and believes no
//! signature while the certificate is not valid. The certificates are made by openssl
//! (an independent implementation) over the test platform key, valid from now.

use std::process::Command;

use axum::http::HeaderMap;
use base64::Engine;
use serde_json::json;
use xuanfang_gateway::providers::payment::{NotifyError, PaymentProvider};
use xuanfang_gateway::providers::wechat_pay::{WechatPay, WechatPayConfig};
use xuanfang_hub::Millis;

const MERCHANT_KEY: &str = include_str!("fixtures/vendor/merchant_key.pem");
const PLATFORM_KEY: &str = include_str!("fixtures/vendor/platform_key.pem");
const APIV3_KEY: [u8; 32] = *b"apiv3-key-of-the-test-merchant!!";
const APPID: &str = "wxd678efh567hg6787";
const MCHID: &str = "1230000109";
/// A serial shaped like WeChat Pay's (40 hex digits); the first byte has its top bit set,
/// so DER stores a leading zero byte that the serial as written leaves out.
const SERIAL: &str = "D157F09EFDC096DE15EBE81A47057A7232F1B8E1";

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// A self-signed certificate of `key_pem`, valid from now for `days`, by openssl.
fn certificate(key_pem: &str, serial: &str, days: u32) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key.pem"), key_pem).unwrap();
    let out = Command::new("openssl")
        .current_dir(dir.path())
        .args(["req", "-x509", "-new", "-key", "key.pem", "-subj"])
        .arg("/C=CN/O=Tenpay.com/CN=Tenpay.com Root CA")
        .args([
            "-set_serial",
            &format!("0x{serial}"),
            "-days",
            &days.to_string(),
        ])
        .args(["-out", "cert.pem"])
        .output()
        .expect("openssl (installed by scripts/test)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(dir.path().join("cert.pem")).unwrap()
}

fn config(platform_pem: &str, platform_serial: &str) -> WechatPayConfig {
    WechatPayConfig {
        base_url: "http://127.0.0.1:9".into(),
        appid: APPID.into(),
        mchid: MCHID.into(),
        serial_no: "MERCHANT-SERIAL-1".into(),
        notify_url: "https://xuanfang.example/api/providers/payment/notify".into(),
        private_key_pem: MERCHANT_KEY.into(),
        platform_public_key_pem: platform_pem.into(),
        platform_serial: platform_serial.into(),
        api_v3_key: APIV3_KEY,
    }
}

fn rsa_sign(pem: &str, msg: &[u8]) -> String {
    use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
    let s: String = (pem.lines()).filter(|l| !l.starts_with("-----")).collect();
    let key = RsaKeyPair::from_pkcs8(&b64().decode(s).unwrap()).unwrap();
    let mut sig = vec![0; key.public().modulus_len()];
    (key.sign(
        &RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        msg,
        &mut sig,
    ))
    .unwrap();
    b64().encode(sig)
}

/// A notification of a paid order, signed at `at` with `key_pem`, naming `serial`.
fn notification(at: Millis, key_pem: &str, serial: &str) -> (HeaderMap, Vec<u8>) {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
    let t = json!({"appid": APPID, "mchid": MCHID, "out_trade_no": "D1",
        "transaction_id": "4200000001", "trade_state": "SUCCESS", "attach": "b1",
        "amount": {"total": 240000, "currency": "CNY"}});
    let nonce = "fdasflkja484";
    let mut data = t.to_string().into_bytes();
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &APIV3_KEY).unwrap())
        .seal_in_place_append_tag(
            Nonce::try_assume_unique_for_key(nonce.as_bytes()).unwrap(),
            Aad::from(b"transaction"),
            &mut data,
        )
        .unwrap();
    let body = json!({"id": "EV-1", "event_type": "TRANSACTION.SUCCESS",
        "resource": {"algorithm": "AEAD_AES_256_GCM", "ciphertext": b64().encode(data),
                     "associated_data": "transaction", "nonce": nonce}})
    .to_string()
    .into_bytes();
    let ts = at.0 / 1000;
    let sig_nonce = "5K8264ILTKCH16CQ2502SI8ZNMTM67VS";
    let mut msg = format!("{ts}\n{sig_nonce}\n").into_bytes();
    msg.extend_from_slice(&body);
    msg.push(b'\n');
    let mut h = HeaderMap::new();
    h.insert("wechatpay-timestamp", ts.to_string().parse().unwrap());
    h.insert("wechatpay-nonce", sig_nonce.parse().unwrap());
    h.insert(
        "wechatpay-signature",
        rsa_sign(key_pem, &msg).parse().unwrap(),
    );
    h.insert("wechatpay-serial", serial.parse().unwrap());
    (h, body)
}

fn now() -> Millis {
    Millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
    )
}

#[test]
fn the_certificate_gives_the_key_and_the_serial_and_is_believed_only_while_valid() {
    let pem = certificate(PLATFORM_KEY, SERIAL, 30);
    let pay = WechatPay::new(config(&pem, "")).unwrap();
    let cert = pay.certificate().expect("read as a certificate");
    assert_eq!(cert.serial, SERIAL);
    let t = now();
    // openssl dates the certificate from now, to the second.
    assert!(
        cert.not_before.0 <= t.0 && t.0 - cert.not_before.0 < 600_000,
        "{cert:?}"
    );
    assert_eq!((cert.not_after.0 - cert.not_before.0) / 1000, 30 * 86_400);

    // Signed by the platform, naming the certificate's serial: believed.
    let (h, body) = notification(t, PLATFORM_KEY, SERIAL);
    let n = pay.verify_notification(&h, &body, t).unwrap();
    assert_eq!((n.out_trade_no.as_str(), n.amount_fen), ("D1", 240_000));
    // Another serial (a public key's id, another certificate's): not believed.
    let (h, body) = notification(t, PLATFORM_KEY, "PUB_KEY_ID_0112300001092026");
    assert!(matches!(
        pay.verify_notification(&h, &body, t),
        Err(NotifyError::Unsigned)
    ));
    // Signed by another key under the right serial: forged.
    let (h, body) = notification(t, MERCHANT_KEY, SERIAL);
    assert!(matches!(
        pay.verify_notification(&h, &body, t),
        Err(NotifyError::Forged)
    ));
    // Past its end, or before its start, the certificate vouches for nothing, however
    // well signed (the clock is the notification's `now`).
    for at in [
        Millis(cert.not_after.0 + 1_000),
        Millis(cert.not_before.0 - 1_000),
    ] {
        let (h, body) = notification(at, PLATFORM_KEY, SERIAL);
        assert!(
            matches!(
                pay.verify_notification(&h, &body, at),
                Err(NotifyError::CertificateInvalid)
            ),
            "at {at:?}"
        );
    }
    // Its last second still counts.
    let at = cert.not_after;
    let (h, body) = notification(at, PLATFORM_KEY, SERIAL);
    assert!(pay.verify_notification(&h, &body, at).is_ok());
}

#[test]
fn a_wrong_serial_an_expired_or_a_non_rsa_certificate_is_refused_at_start() {
    let pem = certificate(PLATFORM_KEY, SERIAL, 30);
    // The serial configured must be the certificate's (case aside).
    let e = WechatPay::new(config(&pem, "5157F09EFDC096DE15EBE81A47057A7232F1B8E2"))
        .err()
        .expect("a serial that is not the certificate's");
    assert!(e.0.contains(SERIAL), "{e}");
    assert!(WechatPay::new(config(&pem, &SERIAL.to_lowercase())).is_ok());
    // Expired at start.
    let not_after = WechatPay::new(config(&pem, ""))
        .unwrap()
        .certificate()
        .unwrap()
        .not_after;
    let e = WechatPay::new_at(config(&pem, ""), Millis(not_after.0 + 1))
        .err()
        .expect("expired");
    assert!(e.0.contains("expired"), "{e}");
    // An EC certificate: WeChat Pay signs with RSA.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("openssl")
        .current_dir(dir.path())
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-out", "ec.pem"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let ec = std::fs::read_to_string(dir.path().join("ec.pem")).unwrap();
    let e = WechatPay::new(config(&certificate(&ec, SERIAL, 30), ""))
        .err()
        .expect("not RSA");
    assert!(e.0.contains("RSA"), "{e}");
    // Not a certificate at all.
    let junk = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    assert!(WechatPay::new(config(junk, "")).is_err());
}
