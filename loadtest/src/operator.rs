//! The operator API as the tool uses it: readiness, server time, batch upload, the
//! batch, the event log and the results export; and the tokens it needs.

use std::collections::HashMap;
use std::time::Duration;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use xuanfang_hub::{Batch, Event, FamilyId, Millis};

/// Failures talking to a gateway.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("token: {0}")]
    Token(String),
    #[error("token file {0}: {1}")]
    TokenFile(String, String),
    #[error("gateway {0} not ready after {1:?}")]
    NotReady(String, Duration),
    #[error("csv: {0}")]
    Csv(String),
}

/// Claims as `gateway/src/auth.rs` reads them.
#[derive(Debug, Serialize)]
struct Claims<'a> {
    sub: &'a str,
    role: &'a str,
    exp: u64,
    iat: u64,
}

/// Where tokens come from: minted with the shared secret, or read from a file.
pub enum Tokens {
    Secret(EncodingKey),
    /// `operator <token>` and `<family id> <token>` lines.
    File {
        operator: Option<String>,
        families: HashMap<FamilyId, String>,
    },
    None,
}

/// Tokens minted here live this long: longer than any run.
const TOKEN_TTL_SECS: u64 = 6 * 3600;

impl Tokens {
    /// From `--jwt-secret` or `--token-file`.
    pub fn new(secret: Option<&str>, file: Option<&std::path::Path>) -> Result<Self, OpsError> {
        if let Some(s) = secret {
            return Ok(Tokens::Secret(EncodingKey::from_secret(s.as_bytes())));
        }
        let Some(path) = file else {
            return Ok(Tokens::None);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| OpsError::TokenFile(path.display().to_string(), e.to_string()))?;
        let mut operator = None;
        let mut families = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (who, tok) = line.split_once(char::is_whitespace).ok_or_else(|| {
                OpsError::TokenFile(
                    path.display().to_string(),
                    format!("line {}: expected `<id> <token>`", i + 1),
                )
            })?;
            if who == "operator" {
                operator = Some(tok.trim().to_owned());
            } else {
                families.insert(FamilyId::from(who), tok.trim().to_owned());
            }
        }
        Ok(Tokens::File { operator, families })
    }

    fn mint(key: &EncodingKey, sub: &str, role: &str) -> Result<String, OpsError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = Claims {
            sub,
            role,
            exp: now + TOKEN_TTL_SECS,
            iat: now,
        };
        encode(&Header::new(Algorithm::HS256), &claims, key)
            .map_err(|e| OpsError::Token(e.to_string()))
    }

    /// The operator token, if any.
    pub fn operator(&self) -> Result<Option<String>, OpsError> {
        match self {
            Tokens::Secret(k) => Self::mint(k, "xuanfang-loadtest", "operator").map(Some),
            Tokens::File { operator, .. } => Ok(operator.clone()),
            Tokens::None => Ok(None),
        }
    }

    /// A family's token.
    pub fn family(&self, f: &FamilyId) -> Result<String, OpsError> {
        match self {
            Tokens::Secret(k) => Self::mint(k, f.as_str(), "family"),
            Tokens::File { families, .. } => families
                .get(f)
                .cloned()
                .ok_or_else(|| OpsError::Token(format!("no token for family {f} in the file"))),
            Tokens::None => Err(OpsError::Token(
                "families need --jwt-secret or --token-file".into(),
            )),
        }
    }
}

/// One gateway's HTTP API.
#[derive(Clone)]
pub struct Gateway {
    pub base: String,
    http: reqwest::Client,
    token: Option<String>,
}

async fn ok(r: reqwest::Response) -> Result<reqwest::Response, OpsError> {
    if r.status().is_success() {
        return Ok(r);
    }
    let url = r.url().to_string();
    let status = r.status().as_u16();
    let body = r.text().await.unwrap_or_default();
    Err(OpsError::Status { url, status, body })
}

impl Gateway {
    /// `base` like `http://127.0.0.1:8080`.
    pub fn new(base: &str, token: Option<String>) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            token,
        }
    }

    /// The WebSocket URL of this gateway.
    pub fn ws_url(&self) -> String {
        let rest = self
            .base
            .strip_prefix("http://")
            .or_else(|| self.base.strip_prefix("ws://"))
            .unwrap_or(&self.base);
        format!("ws://{rest}/ws")
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        let rb = self.http.get(format!("{}{path}", self.base));
        match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    /// Waits until `/readyz` answers (engine up, a batch served).
    pub async fn wait_ready(&self, within: Duration) -> Result<(), OpsError> {
        let end = tokio::time::Instant::now() + within;
        loop {
            if let Ok(r) = self.get("/readyz").send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() >= end {
                return Err(OpsError::NotReady(self.base.clone(), within));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Server time, and the local wall-clock ms at the midpoint of the request.
    pub async fn server_time(&self) -> Result<(Millis, f64), OpsError> {
        #[derive(Deserialize)]
        struct T {
            server_time: Millis,
        }
        let t0 = crate::clock::now_ms();
        let t: T = ok(self.get("/api/time").send().await?)
            .await?
            .json()
            .await?;
        let t1 = crate::clock::now_ms();
        Ok((t.server_time, (t0 + t1) / 2.0))
    }

    /// The batch id the gateway serves now (from the public catalog).
    pub async fn served_batch(&self) -> Result<String, OpsError> {
        #[derive(Deserialize)]
        struct C {
            batch: String,
        }
        let c: C = ok(self.get("/api/catalog").send().await?)
            .await?
            .json()
            .await?;
        Ok(c.batch)
    }

    /// `POST /api/ops/batches` with generated sheets.
    pub async fn create_batch(&self, b: &GeneratedBatch) -> Result<String, OpsError> {
        let form = reqwest::multipart::Form::new()
            .text("batch_id", b.id.clone())
            .text("name", format!("压测批次 {}", b.id))
            .text("preselect_start", b.preselect_start.0.to_string())
            .text("first_session_start", b.first_session_start.0.to_string())
            .text("session_size", b.session_size.to_string())
            .text("window_minutes", b.window_minutes.to_string())
            // The load tool means to make its batch the live one.
            .text("replace", "true")
            .part(
                "units",
                reqwest::multipart::Part::bytes(b.units_csv.clone()).file_name("units.csv"),
            )
            .part(
                "families",
                reqwest::multipart::Part::bytes(b.families_csv.clone()).file_name("families.csv"),
            );
        let mut rb = self
            .http
            .post(format!("{}/api/ops/batches", self.base))
            .multipart(form);
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        #[derive(Deserialize)]
        struct Created {
            batch: String,
        }
        let c: Created = ok(rb.send().await?).await?.json().await?;
        Ok(c.batch)
    }

    /// `GET /api/ops/batch`.
    pub async fn batch(&self) -> Result<Batch, OpsError> {
        Ok(ok(self.get("/api/ops/batch").send().await?)
            .await?
            .json()
            .await?)
    }

    /// `GET /api/ops/events` after `after`, one page.
    pub async fn events_page(&self, after: u64, limit: usize) -> Result<Vec<Event>, OpsError> {
        Ok(ok(self
            .get(&format!("/api/ops/events?after={after}&limit={limit}"))
            .send()
            .await?)
        .await?
        .json()
        .await?)
    }

    /// The whole event log.
    pub async fn all_events(&self) -> Result<Vec<Event>, OpsError> {
        let mut all: Vec<Event> = Vec::new();
        loop {
            let after = all.last().map(|e| e.seq).unwrap_or(0);
            let page = self.events_page(after, 10_000).await?;
            if page.is_empty() {
                return Ok(all);
            }
            all.extend(page);
        }
    }

    /// `GET /api/ops/results.csv`: family id → unit id (empty when none).
    pub async fn results(&self) -> Result<HashMap<String, String>, OpsError> {
        let body = ok(self.get("/api/ops/results.csv").send().await?)
            .await?
            .bytes()
            .await?;
        let bytes = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&body);
        let mut rdr = csv::Reader::from_reader(bytes);
        let headers = rdr
            .headers()
            .map_err(|e| OpsError::Csv(e.to_string()))?
            .clone();
        let col = |needle: &str| {
            headers
                .iter()
                .position(|h| h.ends_with(needle))
                .ok_or_else(|| OpsError::Csv(format!("no column ending in {needle:?}")))
        };
        let (fc, uc) = (col(" family")?, col(" unit")?);
        let mut out = HashMap::new();
        for rec in rdr.records() {
            let rec = rec.map_err(|e| OpsError::Csv(e.to_string()))?;
            out.insert(
                rec.get(fc).unwrap_or_default().to_owned(),
                rec.get(uc).unwrap_or_default().to_owned(),
            );
        }
        Ok(out)
    }
}

/// A batch the tool makes for itself, as the two sheets an operator would upload.
pub struct GeneratedBatch {
    pub id: String,
    pub preselect_start: Millis,
    pub first_session_start: Millis,
    pub session_size: usize,
    pub window_minutes: u32,
    pub units_csv: Vec<u8>,
    pub families_csv: Vec<u8>,
}

/// Layouts of generated units; every generated family may take both.
pub const LAYOUTS: [&str; 2] = ["一房一厅", "两房一厅"];

/// Units enough for every family to pre-select five of its own, plus a popular few.
pub fn generate(
    id: &str,
    families: usize,
    seed: u64,
    preselect_start: Millis,
    first_session_start: Millis,
    session_size: usize,
    window_minutes: u32,
) -> Result<GeneratedBatch, OpsError> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n_units = families * 5 + 16;
    let csv_err = |e: csv::Error| OpsError::Csv(e.to_string());
    let mut u = csv::Writer::from_writer(Vec::new());
    u.write_record([
        "房源编号",
        "楼栋",
        "房号",
        "楼层",
        "户型",
        "面积",
        "朝向",
        "租金",
    ])
    .map_err(csv_err)?;
    let orientations = ["南", "北", "东南", "西"];
    for i in 0..n_units {
        let building = i / 400 + 1;
        let floor = (i % 400) / 12 + 2;
        let number = floor * 100 + (i % 12) + 1;
        let layout = LAYOUTS[i % LAYOUTS.len()];
        let area = if i % 2 == 0 { 45.0 } else { 62.5 };
        u.write_record([
            format!("U{building:02}-{number}"),
            format!("{building}栋"),
            number.to_string(),
            floor.to_string(),
            layout.to_owned(),
            format!("{area}"),
            orientations[i % orientations.len()].to_owned(),
            format!("{}", 900 + (i % 7) * 50),
        ])
        .map_err(csv_err)?;
    }
    let surnames = ["张", "王", "李", "赵", "陈", "刘", "杨", "黄", "周", "吴"];
    let given = ["伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋"];
    let mut ranks: Vec<usize> = (1..=families).collect();
    // Ranks are a permutation so that rank order differs from id order.
    ranks.shuffle(&mut rng);
    let mut f = csv::Writer::from_writer(Vec::new());
    f.write_record(["家庭编号", "姓名", "排位", "可选户型"])
        .map_err(csv_err)?;
    for (i, rank) in ranks.iter().enumerate() {
        let name = format!(
            "{}{}{}",
            surnames[rng.random_range(0..surnames.len())],
            given[rng.random_range(0..given.len())],
            given[rng.random_range(0..given.len())]
        );
        f.write_record([
            format!("LT{:05}", i + 1),
            name,
            rank.to_string(),
            LAYOUTS.join("|"),
        ])
        .map_err(csv_err)?;
    }
    Ok(GeneratedBatch {
        id: id.to_owned(),
        preselect_start,
        first_session_start,
        session_size,
        window_minutes,
        units_csv: u.into_inner().map_err(|e| OpsError::Csv(e.to_string()))?,
        families_csv: f.into_inner().map_err(|e| OpsError::Csv(e.to_string()))?,
    })
}
