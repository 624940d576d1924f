//! Rate and size limits (governor): messages per family, connections and requests per IP.
//! Over a limit gets a clear error or close code, never a crash.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use xuanfang_hub::FamilyId;

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
    /// Open connections from one IP at once.
    pub max_conns_per_ip: u32,
    /// HTTP API requests per second per IP (burst = 4×).
    pub http_per_sec_per_ip: u32,
}

impl Default for LimitConfig {
    fn default() -> Self {
        Self {
            family_msgs_per_sec: 10,
            conn_msgs_per_sec: 20,
            connects_per_sec_per_ip: 200,
            max_conns_per_ip: 25_000,
            http_per_sec_per_ip: 50,
        }
    }
}

fn quota(per_sec: u32, burst_factor: u32) -> Quota {
    let rate = NonZeroU32::new(per_sec.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(per_sec.max(1).saturating_mul(burst_factor)).unwrap_or(rate);
    Quota::per_second(rate).allow_burst(burst)
}

pub struct Limits {
    pub config: LimitConfig,
    family: DefaultKeyedRateLimiter<FamilyId>,
    connects: DefaultKeyedRateLimiter<IpAddr>,
    http: DefaultKeyedRateLimiter<IpAddr>,
    open: Mutex<HashMap<IpAddr, u32>>,
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
    pub fn new(config: LimitConfig) -> Arc<Self> {
        Arc::new(Self {
            family: RateLimiter::keyed(quota(config.family_msgs_per_sec, 4)),
            connects: RateLimiter::keyed(quota(config.connects_per_sec_per_ip, 10)),
            http: RateLimiter::keyed(quota(config.http_per_sec_per_ip, 4)),
            open: Mutex::new(HashMap::new()),
            config,
        })
    }

    /// A per-connection limiter for all frames.
    pub fn connection_limiter(&self) -> governor::DefaultDirectRateLimiter {
        RateLimiter::direct(quota(self.config.conn_msgs_per_sec, 4))
    }

    pub fn family_request(&self, f: &FamilyId) -> bool {
        self.family.check_key(f).is_ok()
    }

    pub fn http_request(&self, ip: IpAddr) -> bool {
        self.http.check_key(&ip).is_ok()
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
