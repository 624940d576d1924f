//! Settings that live in the optional TOML file (`--config`), with documented defaults.

use serde::{Deserialize, Serialize};

use crate::limits::LimitConfig;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FileConfig {
    pub limits: LimitConfig,
    pub ws: WsFileConfig,
    /// What the lease and the move-in notice print besides the record (`[signing]`).
    pub signing: SigningConfig,
    /// The deposit's payment provider (`[payment]`).
    pub payment: PaymentConfig,
    /// The face check's provider (`[face]`).
    pub face: FaceConfig,
}

/// Which vendor a provider is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Vendor {
    /// Not set here: `--sandbox-providers` decides (sandbox, or none).
    #[default]
    Default,
    /// 沙箱: the labelled sandbox (demo, rehearsals), never production.
    Sandbox,
    /// 微信支付 APIv3 Native.
    Wechat,
    /// 支付宝 当面付 (precreate).
    Alipay,
    /// 腾讯云人脸核身 (`[face]` only).
    Tencent,
}

/// `[payment]`: the vendor and its merchant settings. Keys are read from files (or the
/// environment), never written in this file, and never logged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PaymentConfig {
    pub vendor: Vendor,
    /// The vendor's API root; empty: its production one.
    pub base_url: String,
    /// WeChat Pay's appid, or Alipay's app_id.
    pub appid: String,
    /// WeChat Pay only.
    pub mchid: String,
    /// The serial number of the merchant's API certificate.
    pub serial_no: String,
    /// Our notification URL as the vendor reaches it: `https://…/api/providers/payment/notify`.
    pub notify_url: String,
    /// The merchant's API private key (PKCS#8 PEM); for Alipay, the app's private key.
    pub private_key_file: String,
    /// The vendor's public key (PEM `BEGIN PUBLIC KEY`): WeChat Pay's platform key (or its
    /// platform certificate, `BEGIN CERTIFICATE`) or Alipay's public key; for WeChat Pay
    /// its id / serial.
    pub platform_public_key_file: String,
    pub platform_serial: String,
    /// The APIv3 key (32 characters), from this file, else `XUANFANG_WECHAT_APIV3_KEY`.
    pub api_v3_key_file: String,
    /// The refund journal of the embedded engine's gateway (one JSON line per change);
    /// empty: `<data-dir>/refunds.jsonl`. With `--redis` the refunds are kept in Redis,
    /// one ledger for every gateway: a journal named here is taken into it at start and
    /// not written any more.
    pub refund_journal: String,
    /// Seconds between reconciliation sweeps. Default 60; 0: no sweep.
    pub reconcile_secs: u64,
}

impl Default for PaymentConfig {
    fn default() -> Self {
        Self {
            vendor: Vendor::Default,
            base_url: String::new(),
            appid: String::new(),
            mchid: String::new(),
            serial_no: String::new(),
            notify_url: String::new(),
            private_key_file: String::new(),
            platform_public_key_file: String::new(),
            platform_serial: String::new(),
            api_v3_key_file: String::new(),
            refund_journal: String::new(),
            reconcile_secs: 60,
        }
    }
}

/// `[face]`: the face check's vendor and its account. The secret key is read from a
/// file (or the environment), never written here.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaceConfig {
    pub vendor: Vendor,
    /// The vendor's API root; empty: `https://faceid.tencentcloudapi.com`.
    pub base_url: String,
    /// Empty: `ap-guangzhou`.
    pub region: String,
    pub secret_id: String,
    /// The SecretKey, from this file, else `XUANFANG_TENCENT_SECRET_KEY`.
    pub secret_key_file: String,
    /// The business rule (业务流程 RuleId) set up in the vendor's console.
    pub rule_id: String,
    /// Where the vendor's page sends the applicant back: `https://…/app`.
    pub redirect_url: String,
}

/// The bureau's terms as the signing documents print them (`[signing]` in the config
/// file). The defaults suit the demo; a bureau sets its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SigningConfig {
    /// The landlord (甲方). Default `深圳市住房和建设局`.
    pub bureau: String,
    /// The housing project (项目) printed with the unit; empty: the batch's name.
    pub project: String,
    /// Length of the lease in years. Default 3.
    pub term_years: u16,
    /// Where the keys are handed out (钥匙领取地点), as the bureau words it.
    pub key_place: String,
    /// When the keys are handed out (钥匙领取时间), free text.
    pub key_time: String,
    /// The enquiry phone printed on the notice. Default `12345` (the city's hotline).
    pub contact: String,
    /// Documents rendered at once (each takes a CPU core for a few hundred ms); more
    /// requests are answered 503 at once. Default 2.
    pub render_concurrency: usize,
}

impl Default for SigningConfig {
    fn default() -> Self {
        Self {
            bureau: "深圳市住房和建设局".into(),
            project: String::new(),
            term_years: 3,
            key_place: "所选房源项目管理处（地址见项目现场公示）".into(),
            key_time: "收到本通知书之日起15个工作日内，工作日9:00—12:00、14:00—17:30".into(),
            contact: "12345".into(),
            render_concurrency: 2,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct WsFileConfig {
    pub read_buffer: usize,
    pub write_buffer: usize,
    pub max_message: usize,
    pub send_timeout_secs: u64,
    /// Kernel send buffer per connection, bytes (0: the kernel's autotuning).
    pub send_buffer_bytes: usize,
    /// Seconds before a family socket's token expires that it is sent `token_expiring`.
    pub token_refresh_lead_secs: u64,
}

impl Default for WsFileConfig {
    fn default() -> Self {
        let d = crate::app::WsConfig::default();
        Self {
            read_buffer: d.read_buffer,
            write_buffer: d.write_buffer,
            max_message: d.max_message,
            send_timeout_secs: d.send_timeout.as_secs(),
            send_buffer_bytes: d.send_buffer,
            token_refresh_lead_secs: d.token_refresh_lead.as_secs(),
        }
    }
}

impl WsFileConfig {
    pub fn to_ws(&self) -> crate::app::WsConfig {
        crate::app::WsConfig {
            read_buffer: self.read_buffer,
            write_buffer: self.write_buffer,
            max_message: self.max_message,
            send_timeout: std::time::Duration::from_secs(self.send_timeout_secs),
            send_buffer: self.send_buffer_bytes,
            token_refresh_lead: std::time::Duration::from_secs(self.token_refresh_lead_secs),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("bad config {0}: {1}")]
    Parse(String, toml::de::Error),
}

impl FileConfig {
    pub fn load(path: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read(path.display().to_string(), e))?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse(path.display().to_string(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example config of docs/operations.md states the defaults: it must parse, and
    /// its `[signing]` must be the defaults the code has.
    #[test]
    fn the_documented_example_is_the_defaults() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operations.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let start = doc.find("```toml\n[limits]").expect("the example config") + "```toml\n".len();
        let end = start + doc[start..].find("```").unwrap();
        let parsed: FileConfig = toml::from_str(&doc[start..end]).unwrap();
        assert_eq!(parsed.signing, SigningConfig::default());
        assert_eq!(parsed.payment, PaymentConfig::default());
        assert_eq!(parsed.face, FaceConfig::default());
    }

    #[test]
    fn a_partial_signing_section_keeps_the_other_defaults() {
        let c: FileConfig = toml::from_str("[signing]\nbureau = \"某市住房保障局\"\n").unwrap();
        assert_eq!(c.signing.bureau, "某市住房保障局");
        assert_eq!(c.signing.term_years, 3);
        assert_eq!(c.signing.render_concurrency, 2);
    }
}
