//! The providers `[payment]` and `[face]` name, built with their keys read from files
//! (or the environment). A setting missing or a key unreadable stops the start with an
//! error naming it, never with the key's content.

use std::sync::Arc;

use crate::config::{FaceConfig, PaymentConfig, Vendor};
use crate::providers::alipay::{Alipay, AlipayConfig};
use crate::providers::face::FaceVerifier;
use crate::providers::payment::PaymentProvider;
use crate::providers::tencent_face::{TencentFace, TencentFaceConfig};
use crate::providers::wechat_pay::{WechatPay, WechatPayConfig};

/// The APIv3 key's variable when no file is named.
pub const APIV3_KEY_ENV: &str = "XUANFANG_WECHAT_APIV3_KEY";
/// The Tencent Cloud SecretKey's variable when no file is named.
pub const TENCENT_KEY_ENV: &str = "XUANFANG_TENCENT_SECRET_KEY";

#[derive(Debug, thiserror::Error)]
pub enum VendorError {
    #[error("{0} is required (a file, or the variable named in docs/operations.md)")]
    Missing(&'static str),
    #[error("{0}: cannot read {1}: {2}")]
    Read(&'static str, String, std::io::Error),
    #[error("{0}")]
    Bad(String),
}

fn need<'a>(v: &'a str, name: &'static str) -> Result<&'a str, VendorError> {
    if v.trim().is_empty() {
        Err(VendorError::Missing(name))
    } else {
        Ok(v.trim())
    }
}

fn read(path: &str, name: &'static str) -> Result<String, VendorError> {
    std::fs::read_to_string(need(path, name)?)
        .map_err(|e| VendorError::Read(name, path.to_owned(), e))
}

/// The WeChat Pay adapter of `cfg`.
pub fn wechat_of(cfg: &PaymentConfig) -> Result<WechatPay, VendorError> {
    let key = if cfg.api_v3_key_file.trim().is_empty() {
        std::env::var(APIV3_KEY_ENV)
            .map_err(|_| VendorError::Missing("[payment] api_v3_key_file"))?
    } else {
        read(&cfg.api_v3_key_file, "[payment] api_v3_key_file")?
    };
    let key: [u8; 32] = key
        .trim()
        .as_bytes()
        .try_into()
        .map_err(|_| VendorError::Bad("the APIv3 key must be 32 characters".into()))?;
    let base = if cfg.base_url.trim().is_empty() {
        "https://api.mch.weixin.qq.com".to_owned()
    } else {
        cfg.base_url.trim().trim_end_matches('/').to_owned()
    };
    WechatPay::new(WechatPayConfig {
        base_url: base,
        appid: need(&cfg.appid, "[payment] appid")?.to_owned(),
        mchid: need(&cfg.mchid, "[payment] mchid")?.to_owned(),
        serial_no: need(&cfg.serial_no, "[payment] serial_no")?.to_owned(),
        notify_url: need(&cfg.notify_url, "[payment] notify_url")?.to_owned(),
        private_key_pem: read(&cfg.private_key_file, "[payment] private_key_file")?,
        platform_public_key_pem: read(
            &cfg.platform_public_key_file,
            "[payment] platform_public_key_file",
        )?,
        platform_serial: cfg.platform_serial.trim().to_owned(),
        api_v3_key: key,
    })
    .map_err(|e| VendorError::Bad(e.to_string()))
}

/// The payment provider `cfg` names; `None` for [`Vendor::Default`] and
/// [`Vendor::Sandbox`] (the caller builds the sandbox, whose pages it serves).
pub fn payment_of(cfg: &PaymentConfig) -> Result<Option<Arc<dyn PaymentProvider>>, VendorError> {
    match cfg.vendor {
        Vendor::Default | Vendor::Sandbox => Ok(None),
        Vendor::Wechat => Ok(Some(Arc::new(wechat_of(cfg)?))),
        Vendor::Alipay => {
            let base = if cfg.base_url.trim().is_empty() {
                "https://openapi.alipay.com".to_owned()
            } else {
                cfg.base_url.trim().trim_end_matches('/').to_owned()
            };
            let a = Alipay::new(AlipayConfig {
                base_url: base,
                app_id: need(&cfg.appid, "[payment] appid")?.to_owned(),
                notify_url: need(&cfg.notify_url, "[payment] notify_url")?.to_owned(),
                private_key_pem: read(&cfg.private_key_file, "[payment] private_key_file")?,
                alipay_public_key_pem: read(
                    &cfg.platform_public_key_file,
                    "[payment] platform_public_key_file",
                )?,
            })
            .map_err(|e| VendorError::Bad(e.to_string()))?;
            Ok(Some(Arc::new(a)))
        }
        Vendor::Tencent => Err(VendorError::Bad(
            "[payment] vendor tencent is a face vendor".into(),
        )),
    }
}

/// The face provider `cfg` names; `None` for [`Vendor::Default`] and
/// [`Vendor::Sandbox`].
pub fn face_of(cfg: &FaceConfig) -> Result<Option<Arc<dyn FaceVerifier>>, VendorError> {
    match cfg.vendor {
        Vendor::Default | Vendor::Sandbox => Ok(None),
        Vendor::Tencent => {
            let key = if cfg.secret_key_file.trim().is_empty() {
                std::env::var(TENCENT_KEY_ENV)
                    .map_err(|_| VendorError::Missing("[face] secret_key_file"))?
            } else {
                read(&cfg.secret_key_file, "[face] secret_key_file")?
            };
            let or = |v: &str, d: &str| {
                if v.trim().is_empty() {
                    d.to_owned()
                } else {
                    v.trim().trim_end_matches('/').to_owned()
                }
            };
            let face = TencentFace::new(TencentFaceConfig {
                base_url: or(&cfg.base_url, "https://faceid.tencentcloudapi.com"),
                region: or(&cfg.region, "ap-guangzhou"),
                secret_id: need(&cfg.secret_id, "[face] secret_id")?.to_owned(),
                secret_key: key.trim().to_owned(),
                rule_id: need(&cfg.rule_id, "[face] rule_id")?.to_owned(),
                redirect_url: need(&cfg.redirect_url, "[face] redirect_url")?.to_owned(),
            })
            .map_err(|e| VendorError::Bad(e.to_string()))?;
            Ok(Some(Arc::new(face)))
        }
        other => Err(VendorError::Bad(format!(
            "[face] vendor {other:?} is not a face vendor"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_setting_is_named() {
        let cfg = PaymentConfig {
            vendor: Vendor::Wechat,
            api_v3_key_file: "/nonexistent/key".into(),
            ..Default::default()
        };
        let e = payment_of(&cfg).err().unwrap().to_string();
        assert!(e.contains("api_v3_key_file"), "{e}");
    }
}
