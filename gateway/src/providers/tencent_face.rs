//! 腾讯云人脸核身 (FaceId, API 2018-03-01) in its two calls: `DetectAuth` opens a check
//! (a `BizToken` and the `Url` the applicant's phone goes to), `GetDetectInfoEnhanced`
//! fetches the result server to server once the applicant is back. Requests are signed
//! TC3-HMAC-SHA256 with the account's SecretId / SecretKey.

use std::collections::HashMap;

use async_trait::async_trait;
use parking_lot::Mutex;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::face::{FaceSession, FaceStart, FaceVerdict, FaceVerifier};
use super::{hmac_sha256, ProviderError};

const SERVICE: &str = "faceid";
const VERSION: &str = "2018-03-01";

/// `[face]` with `vendor = "tencent"`.
#[derive(Clone)]
pub struct TencentFaceConfig {
    /// `https://faceid.tencentcloudapi.com` (a test's local server in tests).
    pub base_url: String,
    pub region: String,
    pub secret_id: String,
    pub secret_key: String,
    /// The business rule (业务流程) configured in the console.
    pub rule_id: String,
    /// Where the provider's page sends the applicant back: the phone's face step.
    pub redirect_url: String,
}

impl std::fmt::Debug for TencentFaceConfig {
    // The secret key never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TencentFaceConfig")
            .field("base_url", &self.base_url)
            .field("region", &self.region)
            .field("secret_id", &self.secret_id)
            .field("rule_id", &self.rule_id)
            .finish_non_exhaustive()
    }
}

pub struct TencentFace {
    cfg: TencentFaceConfig,
    host: String,
    http: reqwest::Client,
    /// The page of each check this process opened.
    urls: Mutex<HashMap<String, String>>,
}

/// The `Authorization` of a TC3-HMAC-SHA256 request: POST `/`, JSON body, signed
/// headers `content-type;host`.
pub fn tc3_authorization(
    secret_id: &str,
    secret_key: &str,
    service: &str,
    host: &str,
    body: &str,
    timestamp: i64,
) -> String {
    let date = time::OffsetDateTime::from_unix_timestamp(timestamp)
        .map(|t| format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()))
        .unwrap_or_default();
    let canonical = format!(
        "POST\n/\n\ncontent-type:application/json; charset=utf-8\nhost:{host}\n\ncontent-type;host\n{}",
        hex::encode(Sha256::digest(body.as_bytes()))
    );
    let scope = format!("{date}/{service}/tc3_request");
    let to_sign = format!(
        "TC3-HMAC-SHA256\n{timestamp}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let k_date = hmac_sha256(format!("TC3{secret_key}").as_bytes(), date.as_bytes());
    let k_service = hmac_sha256(&k_date, service.as_bytes());
    let k_signing = hmac_sha256(&k_service, b"tc3_request");
    let signature = hex::encode(hmac_sha256(&k_signing, to_sign.as_bytes()));
    format!(
        "TC3-HMAC-SHA256 Credential={secret_id}/{scope}, SignedHeaders=content-type;host, Signature={signature}"
    )
}

impl TencentFace {
    pub fn new(cfg: TencentFaceConfig) -> Result<Self, ProviderError> {
        let host = cfg
            .base_url
            .split_once("://")
            .map(|(_, rest)| rest)
            .unwrap_or(&cfg.base_url)
            .trim_end_matches('/')
            .to_owned();
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| ProviderError(e.to_string()))?;
        Ok(Self {
            cfg,
            host,
            http,
            urls: Mutex::new(HashMap::new()),
        })
    }

    /// One signed call; the `Response` object of the answer, or its `Error`.
    async fn call(&self, action: &str, body: Value) -> Result<Value, ProviderError> {
        let body = body.to_string();
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let auth = tc3_authorization(
            &self.cfg.secret_id,
            &self.cfg.secret_key,
            SERVICE,
            &self.host,
            &body,
            ts,
        );
        let res = self
            .http
            .post(format!("{}/", self.cfg.base_url.trim_end_matches('/')))
            .header("Authorization", auth)
            .header("Content-Type", "application/json; charset=utf-8")
            .header("Host", &self.host)
            .header("X-TC-Action", action)
            .header("X-TC-Version", VERSION)
            .header("X-TC-Timestamp", ts.to_string())
            .header("X-TC-Region", &self.cfg.region)
            .body(body)
            .send()
            .await
            .map_err(|e| ProviderError(format!("faceid {action}: {e}")))?;
        let v: Value = res
            .json()
            .await
            .map_err(|e| ProviderError(format!("faceid {action}: {e}")))?;
        let r = v.get("Response").cloned().unwrap_or(Value::Null);
        if let Some(e) = r.get("Error") {
            return Err(ProviderError(format!(
                "faceid {action}: {} {}",
                e["Code"].as_str().unwrap_or("?"),
                e["Message"].as_str().unwrap_or("")
            )));
        }
        Ok(r)
    }
}

#[async_trait]
impl FaceVerifier for TencentFace {
    async fn start(&self, req: FaceStart) -> Result<FaceSession, ProviderError> {
        // The bureau's applicant name; the identity number comes with the identity
        // platform (not held yet), so the rule compares against the photo it collects.
        let r = self
            .call(
                "DetectAuth",
                json!({
                    "RuleId": self.cfg.rule_id,
                    "RedirectUrl": self.cfg.redirect_url,
                    "Extra": format!("{}/{}", req.batch.0, req.family.0),
                }),
            )
            .await?;
        let (Some(token), Some(url)) = (r["BizToken"].as_str(), r["Url"].as_str()) else {
            return Err(ProviderError(
                "faceid DetectAuth: no BizToken or Url".into(),
            ));
        };
        self.urls.lock().insert(token.to_owned(), url.to_owned());
        Ok(FaceSession {
            session: token.to_owned(),
            url: url.to_owned(),
        })
    }

    fn url_of(&self, session: &str) -> String {
        self.urls
            .lock()
            .get(session)
            .cloned()
            // Opened before a restart: back to the face step, which starts a new check.
            .unwrap_or_else(|| self.cfg.redirect_url.clone())
    }

    async fn fetch_result(&self, session: &str) -> Result<Option<FaceVerdict>, ProviderError> {
        let r = self
            .call(
                "GetDetectInfoEnhanced",
                json!({"BizToken": session, "RuleId": self.cfg.rule_id, "InfoType": "0"}),
            )
            .await?;
        // No ErrCode yet: the applicant has not finished.
        let Some(code) = r["Text"]["ErrCode"].as_i64() else {
            return Ok(None);
        };
        let score = r["Text"]["Sim"]
            .as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .or_else(|| r["Text"]["Sim"].as_f64())
            .map(|s| s.clamp(0.0, 100.0).round() as u8);
        Ok(Some(FaceVerdict {
            passed: code == 0,
            score,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scope_uses_the_utc_date_of_the_timestamp() {
        // 2026-11-30 16:30 UTC (00:30 in Beijing): the scope's date is the UTC one.
        let a = tc3_authorization("AKID", "key", "faceid", "h", "{}", 1_796_056_200);
        assert!(
            a.contains("Credential=AKID/2026-11-30/faceid/tc3_request"),
            "{a}"
        );
        assert_ne!(
            a,
            tc3_authorization("AKID", "key2", "faceid", "h", "{}", 1_796_056_200)
        );
    }
}
