//! The providers `[payment]` and `[face]` name, built with their keys read from files
//! (or the environment). A setting missing or a key unreadable stops the start with an
//! error naming it, never with the key's content.

use std::sync::Arc;

use crate::config::{PaymentConfig, Vendor};
use crate::providers::payment::PaymentProvider;
use crate::providers::wechat_pay::{WechatPay, WechatPayConfig};

/// The APIv3 key's variable when no file is named.
pub const APIV3_KEY_ENV: &str = "XUANFANG_WECHAT_APIV3_KEY";

#[derive(Debug, thiserror::Error)]
pub enum VendorError {
    #[error("[payment] {0} is required for vendor {1}")]
    Missing(&'static str, &'static str),
    #[error("[payment] {0}: cannot read {1}: {2}")]
    Read(&'static str, String, std::io::Error),
    #[error("[payment] {0}")]
    Bad(String),
    #[error("{0} is not built yet: use sandbox or wechat")]
    NotBuilt(&'static str),
}

fn need<'a>(v: &'a str, name: &'static str) -> Result<&'a str, VendorError> {
    if v.trim().is_empty() {
        Err(VendorError::Missing(name, "wechat"))
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
            .map_err(|_| VendorError::Missing("api_v3_key_file", "wechat"))?
    } else {
        read(&cfg.api_v3_key_file, "api_v3_key_file")?
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
        appid: need(&cfg.appid, "appid")?.to_owned(),
        mchid: need(&cfg.mchid, "mchid")?.to_owned(),
        serial_no: need(&cfg.serial_no, "serial_no")?.to_owned(),
        notify_url: need(&cfg.notify_url, "notify_url")?.to_owned(),
        private_key_pem: read(&cfg.private_key_file, "private_key_file")?,
        platform_public_key_pem: read(&cfg.platform_public_key_file, "platform_public_key_file")?,
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
        Vendor::Alipay => Err(VendorError::NotBuilt("[payment] vendor alipay")),
        Vendor::Tencent => Err(VendorError::Bad("tencent is a face vendor".into())),
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
