//! Refusing webhook targets on private, loopback and link-local addresses (unless
//! `notifications_allow_private`): checked when a subscription is saved, and again at every
//! delivery, by the HTTP client's own resolver, on the very addresses it connects to (so a
//! name that later resolves to a private address is refused too). The client follows no
//! redirects and uses no proxy.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::Settings;

/// Whether `ip` is an address a webhook must not reach: private, loopback, link-local,
/// unspecified, shared (CGNAT), benchmarking, reserved, broadcast, multicast or documentation
/// ranges, and IPv6 unique-local, link-local and mapped forms of those.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => private_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return private_v4(v4);
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (first & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
                || (first == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
                || is_nat64_private(v6)
        }
    }
}

fn private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240 // reserved
}

/// `64:ff9b::/96` embeds an IPv4 address that NAT64 gateways reach.
fn is_nat64_private(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        return private_v4(Ipv4Addr::new(a, b, c, d));
    }
    false
}

/// Why `url` may not be a webhook target, if it may not: not http(s), no host, or (unless
/// `allow_private`) a host that is or resolves to a refused address.
pub async fn check(url: &str, allow_private: bool) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("not a valid URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must be an http or https URL".into());
    }
    let port = parsed.port_or_known_default().unwrap_or(443);
    let host = match parsed.host() {
        None => return Err("must name a host".into()),
        Some(url::Host::Ipv4(ip)) => return allowed(&[IpAddr::V4(ip)], allow_private),
        Some(url::Host::Ipv6(ip)) => return allowed(&[IpAddr::V6(ip)], allow_private),
        Some(url::Host::Domain(host)) => host.to_string(),
    };
    if allow_private {
        return Ok(());
    }
    let addrs: Vec<IpAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .map(|a| a.ip())
        .collect();
    if addrs.is_empty() {
        return Err(format!("{host} resolves to no address"));
    }
    allowed(&addrs, allow_private)
}

fn allowed(addrs: &[IpAddr], allow_private: bool) -> Result<(), String> {
    match addrs.iter().find(|ip| !allow_private && is_private(**ip)) {
        Some(ip) => Err(format!(
            "refers to a private, loopback or link-local address ({ip}); set notifications_allow_private to allow it"
        )),
        None => Ok(()),
    }
}

/// Resolves names like the system does, and refuses the answer when any address is refused.
struct GuardedResolver {
    allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
            allowed(&ips, allow_private).map_err(|e| format!("{host} {e}"))?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The client deliveries use: the guarded resolver, the attempt timeout, no redirects, no
/// proxy.
pub fn client(settings: &Settings) -> reqwest::Client {
    // reqwest is built without a default crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let builder = reqwest::Client::builder()
        .user_agent(concat!("Terrace-Notifications/", env!("CARGO_PKG_VERSION")))
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(GuardedResolver {
            allow_private: settings.allow_private,
        });
    builder.build().unwrap_or_else(|e| {
        // Only a broken TLS setup fails here; deliveries then fail and are retried.
        tracing::error!(error = %e, "building the notification client failed");
        reqwest::Client::new()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_and_link_local_addresses_are_refused() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip} must be refused");
        }
        for ip in ["93.184.216.34", "2606:4700::1111", "8.8.8.8"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip} must be allowed");
        }
    }

    #[tokio::test]
    async fn urls_are_checked_by_scheme_and_address() {
        assert!(check("ftp://example.com/", false).await.is_err());
        assert!(check("http://127.0.0.1:9/hook", false).await.is_err());
        assert!(check("http://[::1]/hook", false).await.is_err());
        assert!(check("http://localhost:9/hook", false).await.is_err());
        assert!(check("http://127.0.0.1:9/hook", true).await.is_ok());
        assert!(check("https://93.184.216.34/hook", false).await.is_ok());
    }
}
