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
}

impl Default for WsFileConfig {
    fn default() -> Self {
        let d = crate::app::WsConfig::default();
        Self {
            read_buffer: d.read_buffer,
            write_buffer: d.write_buffer,
            max_message: d.max_message,
            send_timeout_secs: d.send_timeout.as_secs(),
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
