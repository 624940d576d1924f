//! Who the client is, for per-address limits: the TCP peer, or, when the peer is a
//! trusted proxy (the load balancer), the address that proxy says it forwarded for.
//!
//! Only a trusted proxy's word counts. `X-Forwarded-For` is read from the right: each
//! proxy appends the address it received the request from, so the right-most address that
//! is not itself a trusted proxy is the client; everything to its left was written by the
//! client and may be forged. Without `X-Forwarded-For`, `Forwarded: for=` is read the
//! same way. A peer that is not a trusted proxy is the client, whatever it sends.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The proxies whose forwarding headers are believed.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Addresses (`10.0.0.5`, `::1`) or CIDR blocks (`10.0.0.0/8`, `fd00::/8`).
    pub fn parse(list: &[String]) -> Result<Self, String> {
        list.iter()
            .map(|s| {
                let s = s.trim();
                IpNet::from_str(s)
                    .or_else(|_| IpAddr::from_str(s).map(IpNet::from))
                    .map_err(|_| format!("trusted proxy {s:?} is not an address or CIDR block"))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: `peer`, or what a trusted `peer` forwarded for.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        let xff: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        let hops: Vec<&str> = if !xff.is_empty() {
            xff
        } else {
            headers
                .get_all("forwarded")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(forwarded_for)
                .collect()
        };
        self.rightmost_untrusted(&hops).unwrap_or(peer)
    }

    /// Walks the hops from the right past trusted proxies; the first other address is the
    /// client. A hop that is not an address (`unknown`, garbage) ends the walk: nothing
    /// to its left can be trusted, so the caller falls back to the peer. When every hop
    /// is a trusted proxy, the left-most is the client (a request from inside).
    fn rightmost_untrusted(&self, hops: &[&str]) -> Option<IpAddr> {
        let mut last = None;
        for hop in hops.iter().rev() {
            let ip = parse_hop(hop)?;
            if !self.contains(ip) {
                return Some(ip);
            }
            last = Some(ip);
        }
        last
    }
}

/// The `for=` value of one `Forwarded` element (`for=192.0.2.1;proto=https`).
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim().eq_ignore_ascii_case("for").then_some(v.trim())
    })
}

/// One hop: `192.0.2.1`, `2001:db8::1`, `"[2001:db8::1]:4711"`, `192.0.2.1:80`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim().trim_matches('"');
    let ip = IpAddr::from_str(hop)
        .or_else(|_| SocketAddr::from_str(hop).map(|s| s.ip()))
        .or_else(|_| IpAddr::from_str(hop.trim_start_matches('[').trim_end_matches(']')))
        .ok()?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies() -> TrustedProxies {
        TrustedProxies::parse(&["10.0.0.0/8".into(), "127.0.0.1".into(), "fd00::/8".into()])
            .unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.1"),
            ("forwarded", "for=1.2.3.4"),
        ]);
        assert_eq!(proxies().client(ip("192.0.2.9"), &h), ip("192.0.2.9"));
        assert_eq!(
            TrustedProxies::default().client(ip("127.0.0.1"), &h),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn the_rightmost_address_that_is_not_a_proxy_is_the_client() {
        let p = proxies();
        let peer = ip("10.0.0.2");
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.1, 10.1.1.1")]);
        assert_eq!(p.client(peer, &h), ip("203.0.113.1"));
        // Several header lines are one list, in order.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "203.0.113.2"),
        ]);
        assert_eq!(p.client(peer, &h), ip("203.0.113.2"));
        // IPv4-mapped peers are IPv4.
        let mapped = ip("::ffff:10.0.0.2");
        assert_eq!(p.client(mapped, &h), ip("203.0.113.2"));
    }

    #[test]
    fn forwarded_for_is_read_when_there_is_no_x_forwarded_for() {
        let p = proxies();
        let peer = ip("127.0.0.1");
        let h = headers(&[(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8::7]:4711\";proto=https, For=10.0.0.1",
        )]);
        assert_eq!(p.client(peer, &h), ip("2001:db8::7"));
        let h = headers(&[("forwarded", "for=\"192.0.2.60:8080\"")]);
        assert_eq!(p.client(peer, &h), ip("192.0.2.60"));
    }

    #[test]
    fn no_header_garbage_or_only_proxies_fall_back_safely() {
        let p = proxies();
        let peer = ip("10.0.0.2");
        assert_eq!(p.client(peer, &HeaderMap::new()), peer);
        let h = headers(&[("x-forwarded-for", "203.0.113.1, garbage")]);
        assert_eq!(p.client(peer, &h), peer, "garbage right of the client");
        let h = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(p.client(peer, &h), peer);
        let h = headers(&[("x-forwarded-for", "10.9.9.9, 10.0.0.1")]);
        assert_eq!(p.client(peer, &h), ip("10.9.9.9"), "from inside");
    }

    #[test]
    fn bad_entries_are_refused() {
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["lb.example".into()]).is_err());
    }
}
