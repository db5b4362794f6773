//! Where replays may go. A profile names its targets, but only the mirror's own config
//! (never the API) says which hosts those may be, so whoever can write a profile cannot
//! aim production's requests, and the credentials sealed in them, at a host of their
//! choosing. Loopback, link-local and cloud metadata addresses are refused unless the
//! config allows them by name, and the check runs again on every address a name
//! resolves to when a replay connects, so DNS cannot route around it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use serde::{Deserialize, Deserializer};

/// One entry of `mirror.allowed_targets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `candidate.shop.svc.cluster.local`
    Name(String),
    /// `*.shop.svc.cluster.local`: any name under it (stored as `.shop.svc.cluster.local`).
    Under(String),
    /// `10.20.0.0/16` or `10.20.1.7`
    Net(ipnet::IpNet),
}

impl std::str::FromStr for HostPattern {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim().to_ascii_lowercase();
        if let Ok(net) = text.parse::<ipnet::IpNet>() {
            return Ok(Self::Net(net));
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Self::Net(ipnet::IpNet::from(ip)));
        }
        let (under, name) = match text.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, text.as_str()),
        };
        let label_ok =
            |l: &str| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(format!("{text:?} is neither a host name, `*.` and a domain, an IP address nor a CIDR"));
        }
        Ok(if under { Self::Under(format!(".{name}")) } else { Self::Name(name.to_owned()) })
    }
}

impl<'de> Deserialize<'de> for HostPattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

/// The mirror's rules for replay targets, from `[mirror]` (see its keys there).
#[derive(Debug, Clone, Default)]
pub struct TargetPolicy {
    pub allowed_targets: Vec<HostPattern>,
    pub allow_loopback: bool,
    /// Link-local addresses include the cloud metadata endpoints (169.254.169.254), and
    /// the other metadata addresses count as link-local here.
    pub allow_link_local: bool,
}

/// Addresses that answer with a cloud instance's credentials, whatever range they sit in.
const METADATA: [IpAddr; 3] = [
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
];

impl TargetPolicy {
    /// Why `url` may not be a replay target, if it may not.
    pub fn refuses(&self, url: &url::Url) -> Option<String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Some(format!("{url}: only http:// and https:// targets are supported"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Some("credentials in a target URL are refused: they would be stored and published".into());
        }
        let host = match url.host() {
            Some(url::Host::Domain(name)) => name.to_ascii_lowercase(),
            Some(url::Host::Ipv4(ip)) => return self.refuses_literal(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => return self.refuses_literal(IpAddr::V6(ip)),
            None => return Some(format!("{url}: no host")),
        };
        if (host == "localhost" || host.ends_with(".localhost")) && !self.allow_loopback {
            return Some(format!("{host} is loopback: set mirror.allow_loopback = true to allow it"));
        }
        let allowed = self.allowed_targets.iter().any(|p| match p {
            HostPattern::Name(name) => *name == host,
            HostPattern::Under(suffix) => host.ends_with(suffix.as_str()),
            HostPattern::Net(_) => false,
        });
        (!allowed).then(|| format!("{host} is not in mirror.allowed_targets"))
    }

    fn refuses_literal(&self, ip: IpAddr) -> Option<String> {
        if let Some(why) = self.refuses_address(ip) {
            return Some(why);
        }
        let allowed = self.allowed_targets.iter().any(|p| matches!(p, HostPattern::Net(net) if net.contains(&ip)));
        (!allowed).then(|| format!("{ip} is not in mirror.allowed_targets"))
    }

    /// Why a replay may not connect to `ip` whatever the allowed list says, if it may not.
    pub fn refuses_address(&self, ip: IpAddr) -> Option<String> {
        // An IPv4 address written as IPv6 is that IPv4 address.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            IpAddr::V4(_) => ip,
        };
        let (loopback, link_local, never) = match ip {
            IpAddr::V4(v4) => {
                (v4.is_loopback(), v4.is_link_local(), v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast())
            }
            IpAddr::V6(v6) => (v6.is_loopback(), v6.is_unicast_link_local(), v6.is_unspecified() || v6.is_multicast()),
        };
        if never {
            Some(format!("{ip} is not a unicast address"))
        } else if loopback && !self.allow_loopback {
            Some(format!("{ip} is loopback: set mirror.allow_loopback = true to allow it"))
        } else if (link_local || METADATA.contains(&ip)) && !self.allow_link_local {
            Some(format!("{ip} is link-local or a metadata endpoint: set mirror.allow_link_local = true to allow it"))
        } else {
            None
        }
    }
}

/// The replay client's resolver: the system's, less every address the policy refuses. A
/// name that resolves only to refused addresses fails to connect, and the replay is
/// published as a connect error.
#[derive(Debug)]
pub(crate) struct VettedResolver(pub(crate) Arc<TargetPolicy>);

impl reqwest::dns::Resolve for VettedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        let name = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> =
                resolved.iter().copied().filter(|a| policy.refuses_address(a.ip()).is_none()).collect();
            if allowed.is_empty() {
                let why = resolved.first().and_then(|a| policy.refuses_address(a.ip())).unwrap_or_default();
                crate::events::target_refused_at_connect();
                return Err(format!("{name} resolves to no allowed address ({why})").into());
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allowed: &[&str]) -> TargetPolicy {
        TargetPolicy {
            allowed_targets: allowed.iter().map(|p| p.parse().unwrap()).collect(),
            ..TargetPolicy::default()
        }
    }

    fn refuses(policy: &TargetPolicy, url: &str) -> Option<String> {
        policy.refuses(&url.parse().unwrap())
    }

    #[test]
    fn only_allowed_hosts_and_never_metadata_or_loopback_by_default() {
        let p = policy(&["*.shop.svc.cluster.local", "api.example.net", "10.20.0.0/16", "0.0.0.0/0", "::/0"]);
        assert_eq!(refuses(&p, "http://v2.shop.svc.cluster.local:8080/"), None);
        assert_eq!(refuses(&p, "http://api.example.net/base/"), None);
        assert_eq!(refuses(&p, "http://10.20.3.4:9000"), None);
        for (url, why) in [
            ("http://shop.svc.cluster.local.evil.example/", "not in mirror.allowed_targets"),
            ("http://evil.example/", "not in mirror.allowed_targets"),
            ("http://169.254.169.254/latest/meta-data/", "metadata"),
            ("http://100.100.100.200/", "metadata"),
            ("http://[fd00:ec2::254]/", "metadata"),
            ("http://[::ffff:169.254.169.254]/", "metadata"),
            ("http://127.0.0.1:8081/", "loopback"),
            ("http://[::1]/", "loopback"),
            ("http://localhost/", "loopback"),
            ("http://0.0.0.0/", "not a unicast address"),
            ("http://user:pw@api.example.net/", "credentials"),
            ("ftp://api.example.net/", "only http:// and https://"),
        ] {
            let refused = refuses(&p, url).unwrap_or_else(|| panic!("{url} allowed"));
            assert!(refused.contains(why), "{url}: {refused}");
        }
        let local = TargetPolicy { allow_loopback: true, ..policy(&["127.0.0.1"]) };
        assert_eq!(refuses(&local, "http://127.0.0.1:8081/"), None);
        assert!(refuses(&local, "http://127.0.0.2/").unwrap().contains("not in mirror.allowed_targets"));
        assert!(refuses(&policy(&[]), "http://api.example.net/").is_some(), "empty allows nothing");
    }

    #[test]
    fn patterns_parse_or_say_why() {
        assert_eq!("*.Shop.Local".parse::<HostPattern>(), Ok(HostPattern::Under(".shop.local".into())));
        assert!(matches!("10.0.0.0/8".parse::<HostPattern>(), Ok(HostPattern::Net(_))));
        for bad in ["", "*.", "a b", "http://x", "*"] {
            assert!(bad.parse::<HostPattern>().is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn resolved_addresses_are_checked_at_connect_time() {
        use reqwest::dns::Resolve as _;
        let strict = VettedResolver(Arc::new(policy(&["localhost"])));
        let refused = strict.resolve("localhost".parse().unwrap()).await.err().expect("localhost is loopback");
        assert!(refused.to_string().contains("loopback"), "{refused}");
        let local = VettedResolver(Arc::new(TargetPolicy { allow_loopback: true, ..policy(&["localhost"]) }));
        let addrs: Vec<_> = local.resolve("localhost".parse().unwrap()).await.ok().unwrap().collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty());
    }
}
