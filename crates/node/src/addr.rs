//! Where a validator can be reached: `host:port`, the host an IP address or a DNS name.
//!
//! Validators on one machine use `127.0.0.1:<port>`; validators in containers or across
//! machines use names (`validator-2:26652`), which a private Docker network or DNS resolves at
//! every dial — so a validator that comes back with a new IP address is found again.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

/// A `host:port` address. The host is an IP address (IPv6 in brackets) or a DNS name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostPort {
    host: Host,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

/// Why a string is not a `host:port` address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{input:?} is not host:port ({why}); write e.g. 127.0.0.1:26650, [::1]:26650 or validator-0:26650"
)]
pub struct HostPortError {
    input: String,
    why: &'static str,
}

impl HostPort {
    pub fn new_ip(addr: SocketAddr) -> HostPort {
        HostPort {
            host: Host::Ip(addr.ip()),
            port: addr.port(),
        }
    }

    /// Where to bind to be reachable at this address: the IP itself, or every interface
    /// (`0.0.0.0`) when the host is a name (a container's name resolves to its interfaces).
    pub fn listen_addr(&self) -> SocketAddr {
        match &self.host {
            Host::Ip(ip) => SocketAddr::new(*ip, self.port),
            Host::Name(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), self.port),
        }
    }

    /// The libp2p multiaddr: `/ip4/…/tcp/P`, `/ip6/…/tcp/P` or `/dns/NAME/tcp/P` (resolved
    /// at every dial).
    pub fn multiaddr(&self) -> String {
        match &self.host {
            Host::Ip(IpAddr::V4(ip)) => format!("/ip4/{ip}/tcp/{}", self.port),
            Host::Ip(IpAddr::V6(ip)) => format!("/ip6/{ip}/tcp/{}", self.port),
            Host::Name(name) => format!("/dns/{name}/tcp/{}", self.port),
        }
    }

    /// `http://host:port`.
    pub fn http_url(&self) -> String {
        format!("http://{self}")
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            Host::Ip(ip) => write!(f, "{ip}:{}", self.port),
            Host::Name(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

/// A DNS name as RFC 1123 allows it: dot-separated labels of letters, digits and hyphens,
/// not starting or ending with a hyphen.
fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl FromStr for HostPort {
    type Err = HostPortError;

    fn from_str(s: &str) -> Result<HostPort, HostPortError> {
        let err = |why| HostPortError {
            input: s.to_owned(),
            why,
        };
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(HostPort::new_ip(addr));
        }
        let (host, port) = s.rsplit_once(':').ok_or_else(|| err("no :port"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| err("the port is not a number from 0 to 65535"))?;
        if host.starts_with('[') || host.contains(':') {
            return Err(err("an IPv6 address must be in brackets, e.g. [::1]:26650"));
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(HostPort {
                host: Host::Ip(ip),
                port,
            });
        }
        if !is_dns_name(host) {
            return Err(err(
                "the host is neither an IP address nor a DNS name (letters, digits, '-', '.')",
            ));
        }
        Ok(HostPort {
            host: Host::Name(host.to_ascii_lowercase()),
            port,
        })
    }
}

impl TryFrom<String> for HostPort {
    type Error = HostPortError;
    fn try_from(s: String) -> Result<HostPort, HostPortError> {
        s.parse()
    }
}

impl From<HostPort> for String {
    fn from(h: HostPort) -> String {
        h.to_string()
    }
}

impl serde::Serialize for HostPort {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for HostPort {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<HostPort, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(s: &str) -> HostPort {
        s.parse().expect(s)
    }

    #[test]
    fn ips_and_names_round_trip() {
        for s in [
            "127.0.0.1:26650",
            "[::1]:8650",
            "validator-0:26650",
            "a.b-c.d:1",
        ] {
            assert_eq!(hp(s).to_string(), s);
        }
        assert_eq!(hp("Validator-0:1").to_string(), "validator-0:1");
    }

    #[test]
    fn multiaddrs_and_listen_addresses() {
        assert_eq!(hp("10.1.2.3:5").multiaddr(), "/ip4/10.1.2.3/tcp/5");
        assert_eq!(hp("[::1]:5").multiaddr(), "/ip6/::1/tcp/5");
        assert_eq!(hp("v-2:5").multiaddr(), "/dns/v-2/tcp/5");
        assert_eq!(hp("10.1.2.3:5").listen_addr().to_string(), "10.1.2.3:5");
        assert_eq!(hp("v-2:5").listen_addr().to_string(), "0.0.0.0:5");
        assert_eq!(hp("v-2:5").http_url(), "http://v-2:5");
    }

    #[test]
    fn bad_addresses_say_why() {
        for (s, why) in [
            ("validator", "no :port"),
            ("v:99999", "port"),
            ("v:", "port"),
            ("::1:5", "brackets"),
            ("-v:5", "neither"),
            ("v_1:5", "neither"),
            (":5", "neither"),
            ("a..b:5", "neither"),
        ] {
            let e = s.parse::<HostPort>().expect_err(s).to_string();
            assert!(e.contains(why), "{s}: {e}");
            assert!(
                e.contains("127.0.0.1:26650"),
                "the error shows an example: {e}"
            );
        }
    }

    #[test]
    fn json_is_a_plain_string_and_checked() {
        let v: HostPort = serde_json::from_str("\"v-1:8651\"").expect("valid");
        assert_eq!(serde_json::to_string(&v).expect("encodes"), "\"v-1:8651\"");
        assert!(serde_json::from_str::<HostPort>("\"nope\"").is_err());
    }
}
