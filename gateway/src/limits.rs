//! Rate and size limits (governor): messages per family, connections and requests per
//! client address, and the process's cap on TCP connections. Over a limit gets a clear
//! error or close code, never a crash.
//!
//! The client address is the TCP peer, or behind a trusted proxy the address it
//! forwarded for ([`crate::client_ip`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use xuanfang_hub::{Clock, FamilyId};

use crate::client_ip::TrustedProxies;

/// Limits with their defaults; all configurable from flags, env or the TOML file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitConfig {
    /// Family requests per second (burst = 4×).
    pub family_msgs_per_sec: u32,
    /// Frames per second from any one connection, pings included (burst = 4×).
    pub conn_msgs_per_sec: u32,
    /// New WebSocket connections per second from one IP (burst = 10×). A selection hall
    /// or a mobile carrier may put many phones behind one address, so this is generous.
    pub connects_per_sec_per_ip: u32,
    /// Open WebSocket connections from one client address at once. Halls and mobile
    /// carriers put hundreds of phones behind one address, so this is well above what one
    /// household needs, and far below what one process holds (`max_connections`).
    pub max_conns_per_ip: u32,
    /// HTTP API requests (and `/metrics`) per second per client address (burst = 4×).
    pub http_per_sec_per_ip: u32,
    /// Pages and `/web/*` assets per second per client address (burst = 4×). A page load
    /// is about 20 files, so this is higher than the API's.
    pub static_per_sec_per_ip: u32,
    /// TCP connections this process holds at once, of every kind (HTTP, WebSocket,
    /// half-open). Keep it below the open-file limit (`ulimit -n`): beyond it new
    /// connections get 503 `unavailable` and are closed.
    pub max_connections: u32,
    /// Seconds a client has to send a request's whole header, counted from the moment the
    /// server waits for it: a new connection, or a keep-alive one after its last response.
    /// Bounds half-open, dripping and idle connections alike.
    pub header_read_timeout_secs: u64,
    /// Proxies (addresses or CIDR blocks) whose `X-Forwarded-For` / `Forwarded` header
    /// names the client. Empty: the TCP peer is the client.
    pub trusted_proxies: Vec<String>,
    /// Browser origins (`https://host[:port]`) allowed to open `/ws`. Empty: any.
    pub allowed_origins: Vec<String>,
}

impl Default for LimitConfig {
    fn default() -> Self {
        Self {
            family_msgs_per_sec: 10,
            conn_msgs_per_sec: 20,
            connects_per_sec_per_ip: 200,
            max_conns_per_ip: 2_000,
            http_per_sec_per_ip: 50,
            static_per_sec_per_ip: 200,
            max_connections: 18_000,
            header_read_timeout_secs: 10,
            trusted_proxies: Vec::new(),
            allowed_origins: Vec::new(),
        }
    }
}

fn quota(per_sec: u32, burst_factor: u32) -> Quota {
    let rate = NonZeroU32::new(per_sec.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(per_sec.max(1).saturating_mul(burst_factor)).unwrap_or(rate);
    Quota::per_second(rate).allow_burst(burst)
}

/// The clock the rate limiters count on: the process's monotonic clock, or one injected
/// with [`Limits::with_clock`] (a test's `ManualClock`), so that a bucket refills when the
/// test moves the clock and never because the machine was slow.
#[derive(Clone)]
pub enum LimitClock {
    /// Time since `origin`, monotonic (production).
    Monotonic(Instant),
    /// An injected clock's milliseconds.
    Injected(Arc<dyn Clock>),
}

impl governor::clock::Clock for LimitClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        match self {
            Self::Monotonic(origin) => Nanos::from(origin.elapsed()),
            // Before 1970 counts as 0: governor saturates, it never panics.
            Self::Injected(c) => Nanos::from(u64::try_from(c.now().0).unwrap_or(0) * 1_000_000),
        }
    }
}

type KeyedLimiter<K> = RateLimiter<K, DefaultKeyedStateStore<K>, LimitClock, NoOpMiddleware<Nanos>>;

fn keyed<K: Clone + std::hash::Hash + Eq>(quota: Quota, clock: &LimitClock) -> KeyedLimiter<K> {
    RateLimiter::new(quota, DefaultKeyedStateStore::default(), clock.clone())
}

/// A limiter of one connection's frames ([`Limits::connection_limiter`]).
pub type ConnLimiter = RateLimiter<NotKeyed, InMemoryState, LimitClock, NoOpMiddleware<Nanos>>;

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("[limits] {0}")]
pub struct LimitError(String);

pub struct Limits {
    pub config: LimitConfig,
    pub proxies: TrustedProxies,
    /// `allowed_origins`, lower case, without a trailing `/`.
    origins: Vec<String>,
    clock: LimitClock,
    family: KeyedLimiter<FamilyId>,
    connects: KeyedLimiter<IpAddr>,
    http: KeyedLimiter<IpAddr>,
    statics: KeyedLimiter<IpAddr>,
    open: Mutex<HashMap<IpAddr, u32>>,
    /// One permit per open TCP connection (`max_connections`).
    tcp: Arc<Semaphore>,
    /// When [`Limits::hint_untrusted_proxy`] last logged.
    hinted: Mutex<Option<Instant>>,
}

/// Why a connection is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum ConnRefusal {
    TooFast,
    TooMany,
}

/// Holds one of an IP's open-connection slots; released on drop.
pub struct ConnSlot {
    limits: Arc<Limits>,
    ip: IpAddr,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock();
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

impl Limits {
    /// The limits of `config`; panics on a setting [`Limits::try_new`] refuses (tests).
    pub fn new(config: LimitConfig) -> Arc<Self> {
        Self::try_new(config).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_new(config: LimitConfig) -> Result<Arc<Self>, LimitError> {
        Self::try_with_clock(config, LimitClock::Monotonic(Instant::now()))
    }

    /// The limits of `config` counting on `clock` (tests: a `ManualClock`, so that a
    /// rate limit's verdict does not depend on how fast the machine runs).
    pub fn with_clock(config: LimitConfig, clock: Arc<dyn Clock>) -> Arc<Self> {
        Self::try_with_clock(config, LimitClock::Injected(clock)).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_with_clock(config: LimitConfig, clock: LimitClock) -> Result<Arc<Self>, LimitError> {
        let proxies = TrustedProxies::parse(&config.trusted_proxies).map_err(LimitError)?;
        let origins = config
            .allowed_origins
            .iter()
            .map(|o| normalize_origin(o))
            .collect::<Result<_, _>>()?;
        if config.max_connections == 0 {
            return Err(LimitError("max_connections must be at least 1".into()));
        }
        if config.header_read_timeout_secs == 0 {
            return Err(LimitError(
                "header_read_timeout_secs must be at least 1".into(),
            ));
        }
        Ok(Arc::new(Self {
            proxies,
            origins,
            family: keyed(quota(config.family_msgs_per_sec, 4), &clock),
            connects: keyed(quota(config.connects_per_sec_per_ip, 10), &clock),
            http: keyed(quota(config.http_per_sec_per_ip, 4), &clock),
            statics: keyed(quota(config.static_per_sec_per_ip, 4), &clock),
            clock,
            open: Mutex::new(HashMap::new()),
            tcp: Arc::new(Semaphore::new(config.max_connections as usize)),
            hinted: Mutex::new(None),
            config,
        }))
    }

    /// A place for one more TCP connection, held until the connection (or the
    /// WebSocket it became) is dropped; `None` at `max_connections`.
    pub fn tcp_connection(&self) -> Option<OwnedSemaphorePermit> {
        self.tcp.clone().try_acquire_owned().ok()
    }

    /// TCP connections open now.
    pub fn tcp_open(&self) -> usize {
        (self.config.max_connections as usize).saturating_sub(self.tcp.available_permits())
    }

    /// Waits until every TCP connection is closed.
    pub async fn all_closed(&self) {
        let _all = self.tcp.acquire_many(self.config.max_connections).await;
    }

    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.config.header_read_timeout_secs)
    }

    /// Whether a browser page of `origin` may open a WebSocket: any, when no list is
    /// configured; a request without `Origin` (not a browser) always may.
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        match origin {
            None => true,
            Some(_) if self.origins.is_empty() => true,
            Some(o) => {
                let o = o.trim().trim_end_matches('/').to_ascii_lowercase();
                self.origins.contains(&o)
            }
        }
    }

    /// A per-connection limiter for all frames.
    pub fn connection_limiter(&self) -> ConnLimiter {
        RateLimiter::direct_with_clock(quota(self.config.conn_msgs_per_sec, 4), self.clock.clone())
    }

    pub fn family_request(&self, f: &FamilyId) -> bool {
        self.family.check_key(f).is_ok()
    }

    pub fn http_request(&self, ip: IpAddr) -> bool {
        self.http.check_key(&ip).is_ok()
    }

    /// Called when `peer` is refused at a per-address limit: if it sent forwarding
    /// headers without being a trusted proxy, it is likely a load balancer missing from
    /// `trusted_proxies`, which makes every client behind it share its limits. Says so in
    /// the log, at most once a minute.
    pub fn hint_untrusted_proxy(&self, peer: IpAddr, headers: &axum::http::HeaderMap) {
        let forwarded =
            headers.contains_key("x-forwarded-for") || headers.contains_key("forwarded");
        if !forwarded || self.proxies.contains(peer) {
            return;
        }
        let mut last = self.hinted.lock();
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(60)) {
            return;
        }
        *last = Some(Instant::now());
        tracing::warn!(
            %peer,
            "per-address limit reached by a peer that sends X-Forwarded-For/Forwarded but is \
             not a trusted proxy: if it is your load balancer, list it in trusted_proxies \
             (--trusted-proxy), or every client behind it shares one address's limits"
        );
    }

    /// A page or an asset of the web client.
    pub fn static_request(&self, ip: IpAddr) -> bool {
        self.statics.check_key(&ip).is_ok()
    }

    pub fn connect(self: &Arc<Self>, ip: IpAddr) -> Result<ConnSlot, ConnRefusal> {
        if self.connects.check_key(&ip).is_err() {
            return Err(ConnRefusal::TooFast);
        }
        let mut open = self.open.lock();
        let n = open.entry(ip).or_default();
        if *n >= self.config.max_conns_per_ip {
            return Err(ConnRefusal::TooMany);
        }
        *n += 1;
        Ok(ConnSlot {
            limits: self.clone(),
            ip,
        })
    }

    /// Forgets idle keys so the keyed limiters do not grow without bound.
    pub fn housekeeping(&self) {
        self.family.retain_recent();
        self.connects.retain_recent();
        self.http.retain_recent();
        self.statics.retain_recent();
    }
}

/// `https://host[:port]` as browsers send it in `Origin`: lower case, no path.
fn normalize_origin(o: &str) -> Result<String, LimitError> {
    let o = o.trim().trim_end_matches('/').to_ascii_lowercase();
    let rest = o
        .strip_prefix("https://")
        .or_else(|| o.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains('/') => Ok(o),
        _ => Err(LimitError(format!(
            "allowed origin {o:?} is not scheme://host[:port]"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_beyond_the_per_ip_cap_are_refused_and_slots_come_back() {
        let limits = Limits::new(LimitConfig {
            max_conns_per_ip: 2,
            ..LimitConfig::default()
        });
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = limits.connect(ip).unwrap();
        let _b = limits.connect(ip).unwrap();
        assert_eq!(limits.connect(ip).err(), Some(ConnRefusal::TooMany));
        drop(a);
        assert!(limits.connect(ip).is_ok());
    }

    #[test]
    fn origins_are_compared_as_browsers_send_them() {
        let limits = Limits::new(LimitConfig {
            allowed_origins: vec!["https://Xuanfang.example/".into()],
            ..LimitConfig::default()
        });
        assert!(limits.origin_allowed(Some("https://xuanfang.example")));
        assert!(!limits.origin_allowed(Some("https://xuanfang.example.evil")));
        assert!(!limits.origin_allowed(Some("null")));
        assert!(limits.origin_allowed(None), "not a browser");
        assert!(Limits::new(LimitConfig::default()).origin_allowed(Some("https://any")));
        let bad = LimitConfig {
            allowed_origins: vec!["xuanfang.example".into()],
            ..LimitConfig::default()
        };
        assert!(Limits::try_new(bad).is_err());
    }

    #[test]
    fn tcp_places_come_back_when_dropped() {
        let limits = Limits::new(LimitConfig {
            max_connections: 1,
            ..LimitConfig::default()
        });
        let a = limits.tcp_connection().expect("a place");
        assert!(limits.tcp_connection().is_none());
        assert_eq!(limits.tcp_open(), 1);
        drop(a);
        assert!(limits.tcp_connection().is_some());
    }

    #[test]
    fn family_requests_over_the_burst_are_refused() {
        let limits = Limits::new(LimitConfig {
            family_msgs_per_sec: 1,
            ..LimitConfig::default()
        });
        let f = FamilyId::from("F1");
        let allowed = (0..10).filter(|_| limits.family_request(&f)).count();
        assert_eq!(allowed, 4, "burst of 4× the per-second rate");
    }
}
