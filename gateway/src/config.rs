//! Settings that live in the optional TOML file (`--config`), with documented defaults.

use serde::{Deserialize, Serialize};

use crate::limits::LimitConfig;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FileConfig {
    pub limits: LimitConfig,
    pub ws: WsFileConfig,
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
