//! Who a client is, by address, for the rate limits and sign-in throttling.
//!
//! The address is the connection's peer, unless the peer is one of the
//! trusted proxies (`--trusted-proxies`): then it is the nearest address in
//! the proxies' `Forwarded` (RFC 7239) or, without it, `X-Forwarded-For`
//! chain that is not itself a trusted proxy, read from the right. Entries to
//! the left of that one were written by the client and are never believed, so
//! a client cannot pick its own bucket by sending the header itself.
//!
//! An IPv6 client is keyed by its /64, the block one subscriber usually gets:
//! otherwise one machine could rotate through 2^64 addresses, each with its
//! own allowance.

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr},
    str::FromStr,
    sync::Arc,
};

use http::HeaderMap;
use ipnet::IpNet;

/// The proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Arc<[IpNet]>);

impl TrustedProxies {
    /// Parses a comma-separated list of addresses and CIDR blocks
    /// (`10.0.0.0/8, 192.0.2.7, fd00::/8`); empty trusts no one.
    ///
    /// # Errors
    /// The entry that is neither.
    pub fn parse(list: &str) -> Result<Self, String> {
        list.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                IpNet::from_str(entry)
                    .or_else(|_| IpAddr::from_str(entry).map(IpNet::from))
                    .map_err(|_| format!("{entry:?} is not an address or a CIDR block"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|nets| Self(nets.into()))
    }

    fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&address))
    }

    /// The client's address: `peer`'s, or the one its trusted proxies name.
    #[must_use]
    pub fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = canonical(peer.ip());
        if !self.trusts(client) {
            return client;
        }
        let hops = forwarded_for(headers);
        for hop in hops.iter().rev() {
            let Some(hop) = hop else {
                // Unreadable (`unknown`, an obfuscated name): the last address
                // a trusted proxy vouched for is as far as the chain goes.
                return client;
            };
            client = canonical(*hop);
            if !self.trusts(client) {
                return client;
            }
        }
        client
    }
}

/// The addresses a request passed through, oldest first, as the `Forwarded`
/// header (or, without one, `X-Forwarded-For`) lists them; `None` for an
/// entry that is not an address.
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded: Vec<&str> = headers
        .get_all(http::header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|value| value.split(','))
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
                    .and_then(|(_, value)| node_address(value.trim()))
            })
            .collect();
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|entry| node_address(entry.trim()))
        .collect()
}

/// An address as a forwarding header writes it: `192.0.2.1`,
/// `"192.0.2.1:4711"`, `"[2001:db8::1]:4711"`, `2001:db8::1`.
fn node_address(node: &str) -> Option<IpAddr> {
    let node = node.trim_matches('"');
    if let Ok(address) = IpAddr::from_str(node) {
        return Some(address);
    }
    if let Some(bracketed) = node.strip_prefix('[') {
        return bracketed
            .split_once(']')
            .and_then(|(v6, _)| Ipv6Addr::from_str(v6).ok())
            .map(IpAddr::V6);
    }
    node.rsplit_once(':')
        .and_then(|(v4, _)| IpAddr::from_str(v4).ok())
}

/// IPv4 addresses as themselves (also when mapped into IPv6).
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}

/// The key a client's allowance is kept under: its IPv4 address, or its IPv6
/// /64.
#[must_use]
pub fn key(address: IpAddr) -> IpAddr {
    match canonical(address) {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(http::HeaderName::from_str(name).unwrap(), value.parse().unwrap());
        }
        headers
    }

    fn peer(address: &str) -> SocketAddr {
        SocketAddr::new(address.parse().unwrap(), 40_000)
    }

    fn ip(address: &str) -> IpAddr {
        address.parse().unwrap()
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client_whatever_it_says() {
        let none = TrustedProxies::default();
        let sent = headers(&[
            ("x-forwarded-for", "198.51.100.9"),
            ("forwarded", "for=198.51.100.9"),
        ]);
        assert_eq!(none.client(peer("203.0.113.5"), &sent), ip("203.0.113.5"));
    }

    #[test]
    fn behind_a_trusted_proxy_the_nearest_untrusted_hop_is_the_client() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, 192.0.2.7").unwrap();
        // The balancer appended the address it saw; the client's own claim
        // (left of it) is ignored.
        let chain = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.5")]);
        assert_eq!(proxies.client(peer("10.1.2.3"), &chain), ip("203.0.113.5"));
        // Two proxies deep.
        let chain = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.5, 192.0.2.7")]);
        assert_eq!(proxies.client(peer("10.1.2.3"), &chain), ip("203.0.113.5"));
        // Header split over two lines reads as one list.
        let chain = headers(&[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "203.0.113.5")]);
        assert_eq!(proxies.client(peer("10.1.2.3"), &chain), ip("203.0.113.5"));
        // A peer that is not a trusted proxy is never believed.
        assert_eq!(proxies.client(peer("203.0.113.77"), &chain), ip("203.0.113.77"));
        // A trusted proxy that forwarded nothing: the proxy itself.
        assert_eq!(
            proxies.client(peer("10.1.2.3"), &HeaderMap::new()),
            ip("10.1.2.3")
        );
        // An unreadable hop stops the walk at the last trusted one.
        let chain = headers(&[("x-forwarded-for", "203.0.113.5, unknown")]);
        assert_eq!(proxies.client(peer("10.1.2.3"), &chain), ip("10.1.2.3"));
    }

    #[test]
    fn forwarded_is_read_before_x_forwarded_for() {
        let proxies = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let chain = headers(&[
            (
                "forwarded",
                r#"for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https, for=10.0.0.2"#,
            ),
            ("x-forwarded-for", "198.51.100.1"),
        ]);
        assert_eq!(proxies.client(peer("10.1.2.3"), &chain), ip("2001:db8:cafe::17"));
        let chain = headers(&[("forwarded", r#"for="203.0.113.5:4711""#)]);
        assert_eq!(proxies.client(peer("10.1.2.3"), &chain), ip("203.0.113.5"));
    }

    #[test]
    fn a_bad_entry_in_the_list_is_named() {
        let error = TrustedProxies::parse("10.0.0.0/8, proxy.local").unwrap_err();
        assert!(error.contains("proxy.local"), "{error}");
        assert!(TrustedProxies::parse("").unwrap().0.is_empty());
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64_and_ipv4_by_address() {
        assert_eq!(key(ip("2001:db8:1:2:aaaa::1")), key(ip("2001:db8:1:2:bbbb::9")));
        assert_ne!(key(ip("2001:db8:1:2::1")), key(ip("2001:db8:1:3::1")));
        assert_eq!(key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(key(ip("192.0.2.1")), ip("192.0.2.1"));
        assert_ne!(key(ip("192.0.2.1")), key(ip("192.0.2.2")));
        assert_eq!(key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
    }
}
