//! The endpoint guard: which addresses a store named by someone else may reach.
//!
//! A tenant names the bucket its job's checkpoints and outputs go to, and the provider's agent
//! connects to it. A hostile tenant could name the provider's own network instead — a
//! database on `10.0.0.5`, the cloud's metadata service on `169.254.169.254`, the agent's own
//! API on `127.0.0.1` — and use the agent's requests to reach what the tenant cannot (SSRF).
//! So a store built with [`crate::S3Config::public_addresses_only`] connects only to public
//! addresses: [`is_public`] decides, over every address the endpoint's name resolves to
//! ([`check_addresses`]: one non-public address refuses the name), and it decides again at
//! every connection, inside the HTTP client's own resolver ([`PublicOnlyResolver`]), so a name
//! that resolved to a public address when it was checked and to a private one later (DNS
//! rebinding) is still refused. An endpoint written as an address is checked when the store is
//! built (no resolver sees it).
//!
//! What it does not cover: a redirect answered by the endpoint to an `https://` URL written as
//! a private address (the HTTP client follows redirects, and an address needs no resolver).
//! Plain `http://` is refused by the client itself unless [`crate::S3Config::allow_http`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an endpoint may not be reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointRefused {
    #[error(
        "{host} resolves to {addr}, which is not a public address ({kind}); a provider \
         reaches only public endpoints unless its operator allows private ones \
         (`gpunet provider start --allow-private-blob-endpoints`)"
    )]
    NotPublic {
        host: String,
        addr: IpAddr,
        kind: &'static str,
    },
    #[error("{host} resolves to no address")]
    NoAddress { host: String },
    #[error("{host} cannot be resolved: {why}")]
    Unresolved { host: String, why: String },
}

/// What kind of non-public address `ip` is, or `None` when it is public (globally routable
/// unicast). IPv4 inside IPv6 (mapped, compatible, NAT64, 6to4) is judged by the IPv4 address.
pub fn non_public_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => v6_kind(v6),
    }
}

/// Whether `ip` is a public (globally routable unicast) address.
pub fn is_public(ip: IpAddr) -> bool {
    non_public_kind(ip).is_none()
}

fn v4_kind(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    let kind = match (a, b, c) {
        (0, _, _) => "unspecified / this network, 0.0.0.0/8",
        (10, _, _) => "private, 10.0.0.0/8",
        (100, 64..=127, _) => "carrier-grade NAT, 100.64.0.0/10",
        (127, _, _) => "loopback, 127.0.0.0/8",
        (169, 254, _) => "link-local (cloud metadata), 169.254.0.0/16",
        (172, 16..=31, _) => "private, 172.16.0.0/12",
        (192, 0, 0) => "IETF protocol assignments, 192.0.0.0/24",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (192, 88, 99) => "6to4 relay anycast, 192.88.99.0/24",
        (192, 168, _) => "private, 192.168.0.0/16",
        (198, 18..=19, _) => "benchmarking, 198.18.0.0/15",
        (224..=239, _, _) => "multicast, 224.0.0.0/4",
        (240..=255, _, _) => "reserved or broadcast, 240.0.0.0/4",
        _ => return None,
    };
    Some(kind)
}

fn v6_kind(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    let embedded_v4 = |hi: u16, lo: u16| {
        Ipv4Addr::new(
            (hi >> 8) as u8,
            (hi & 0xff) as u8,
            (lo >> 8) as u8,
            (lo & 0xff) as u8,
        )
    };
    if ip.is_unspecified() {
        return Some("unspecified, ::");
    }
    if ip.is_loopback() {
        return Some("loopback, ::1");
    }
    // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (the deprecated compatible form).
    if s[..5] == [0; 5] && (s[5] == 0xffff || s[5] == 0) {
        return v4_kind(embedded_v4(s[6], s[7]));
    }
    // 64:ff9b::/96, NAT64 to an IPv4 address.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return v4_kind(embedded_v4(s[6], s[7]));
    }
    // 2002::/16, 6to4: the IPv4 address follows the prefix.
    if s[0] == 0x2002 {
        return v4_kind(embedded_v4(s[1], s[2]));
    }
    let kind = match s[0] {
        0x0064 if s[1] == 0xff9b && s[2] == 1 => "local-use NAT64, 64:ff9b:1::/48",
        0x0100 if s[1..4] == [0, 0, 0] => "discard, 100::/64",
        0x2001 if s[1] == 0 => "Teredo, 2001::/32",
        0x2001 if s[1] == 0x0db8 => "documentation, 2001:db8::/32",
        0x2001 if s[1] < 0x0200 => "IETF protocol assignments, 2001::/23",
        x if x & 0xfe00 == 0xfc00 => "unique local, fc00::/7",
        x if x & 0xffc0 == 0xfe80 => "link-local, fe80::/10",
        x if x & 0xffc0 == 0xfec0 => "site-local, fec0::/10",
        x if x & 0xff00 == 0xff00 => "multicast, ff00::/8",
        // Only 2000::/3 is global unicast; the rest is unassigned or reserved.
        x if x & 0xe000 != 0x2000 => "reserved, outside 2000::/3",
        _ => return None,
    };
    Some(kind)
}

/// The guard over what `host` resolved to: every address must be public, and there must be
/// one. Pure.
pub fn check_addresses(host: &str, addrs: &[IpAddr]) -> Result<(), EndpointRefused> {
    if addrs.is_empty() {
        return Err(EndpointRefused::NoAddress { host: host.into() });
    }
    for addr in addrs {
        if let Some(kind) = non_public_kind(*addr) {
            return Err(EndpointRefused::NotPublic {
                host: host.into(),
                addr: *addr,
                kind,
            });
        }
    }
    Ok(())
}

/// Resolves `host` (a name, or an address written as text) and applies [`check_addresses`].
pub async fn resolve_public(host: &str) -> Result<Vec<IpAddr>, EndpointRefused> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((host, 0))
            .await
            .map_err(|e| EndpointRefused::Unresolved {
                host: host.into(),
                why: e.to_string(),
            })?
            .map(|a| a.ip())
            .collect(),
    };
    check_addresses(host, &addrs)?;
    Ok(addrs)
}

/// The HTTP client's resolver for a guarded store: every name is resolved and checked at
/// every connection, so a name cannot be pointed at a private address after it was checked.
#[derive(Debug, Clone, Copy, Default)]
pub struct PublicOnlyResolver;

impl object_store::client::DnsResolver for PublicOnlyResolver {
    fn resolve(&self, host: &str) -> object_store::client::DnsFuture {
        let host = host.to_owned();
        Box::pin(async move {
            resolve_public(&host)
                .await
                .map_err(|e| Box::new(e) as object_store::client::DnsError)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(addr: &str, public: bool) {
        let ip: IpAddr = addr.parse().expect("an address");
        assert_eq!(is_public(ip), public, "{addr}: {:?}", non_public_kind(ip));
    }

    #[test]
    fn only_globally_routable_unicast_addresses_are_public() {
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "52.216.0.1",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "169.253.0.1",
            "192.169.0.1",
            "223.255.255.255",
            "2600:1f18::1",
            "2a00:1450::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            check(public, true);
        }
        for private in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:a00:1::1",
            "2002:7f00:1::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "2001::1",
            "100::1",
            "4000::1",
        ] {
            check(private, false);
        }
    }

    #[test]
    fn one_private_address_among_public_ones_refuses_the_name() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("an address");
        assert_eq!(
            check_addresses("s3.example.com", &[ip("52.216.0.1")]),
            Ok(())
        );
        let err = check_addresses("s3.example.com", &[ip("52.216.0.1"), ip("169.254.169.254")])
            .expect_err("refused");
        assert!(matches!(err, EndpointRefused::NotPublic { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("169.254.169.254") && text.contains("link-local"),
            "{text}"
        );
        assert!(text.contains("--allow-private-blob-endpoints"), "{text}");
        assert_eq!(
            check_addresses("nothing.example", &[]),
            Err(EndpointRefused::NoAddress {
                host: "nothing.example".into()
            })
        );
    }

    #[tokio::test]
    async fn loopback_names_and_addresses_are_refused_when_resolved() {
        assert!(matches!(
            resolve_public("localhost").await,
            Err(EndpointRefused::NotPublic { .. })
        ));
        assert!(matches!(
            resolve_public("127.0.0.1").await,
            Err(EndpointRefused::NotPublic { .. })
        ));
        assert!(matches!(
            resolve_public("[::1]").await,
            Err(EndpointRefused::NotPublic { .. })
        ));
    }
}
