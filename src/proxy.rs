//! Which forward proxy a request goes through, decided exactly as Go's `golang.org/x/net/http/httpproxy`
//! decides it — the rules client-go and the original controller follow, so one `NO_PROXY` works for both.
//!
//! - `HTTPS_PROXY` (else `https_proxy`) serves `https` URLs, `HTTP_PROXY` (else `http_proxy`) serves `http`
//!   URLs; an empty variable counts as unset. `ALL_PROXY` is not read (Go does not read it either).
//! - A proxy value without a scheme (`proxy:3128`) means `http://proxy:3128`.
//! - `localhost` and loopback IPs (`127.0.0.0/8`, `::1`) never go through a proxy, whatever `NO_PROXY` says.
//! - `NO_PROXY` (else `no_proxy`) is a comma-separated list, case-insensitive, blanks trimmed:
//!   `*` (nothing is proxied); an IP (`10.0.0.1`, `fd00::1`, `[fd00::1]:443` — matches that IP literal only);
//!   a CIDR (`10.0.0.0/8`, `fd00::/8` — matches IP literals in it, never names); a domain (`example.com`
//!   matches it and every subdomain; `.example.com` and `*.example.com` only subdomains). IP and domain
//!   entries may carry a port (`example.com:8443`), which must then equal the URL's port (explicit, or 80/443
//!   by scheme). The decision is made on the host as written in the URL: a name is never resolved first.
//!
//! Unlike Go, which silently ignores a proxy value it cannot parse, an unusable value is an error at start-up:
//! a controller that quietly bypasses the proxy it was given fails later, far from the cause. Go's refusal of
//! `HTTP_PROXY` in CGI processes does not apply to a controller and is not reproduced; internationalized
//! domain names are compared as written (Go converts them to punycode first).
//!
//! The decision is pure; [`ProxyConfig::from_env`] is the only function here that reads the environment.

use std::net::IpAddr;

use ureq::http::Uri;

/// A proxy server to send requests through.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    proxy: ureq::Proxy,
    /// The URL without user information, for logs and errors.
    shown: String,
}

impl ProxyUrl {
    /// Parses a proxy URL as Go does (`host:port` means `http://host:port`); `source` names it in errors.
    pub(crate) fn parse(value: &str, source: &str) -> Result<ProxyUrl, String> {
        let value = value.trim();
        let with_scheme = if value.contains("://") {
            value.to_string()
        } else {
            format!("http://{value}")
        };
        let uri: Uri = with_scheme
            .parse()
            .map_err(|e| format!("{source} {value:?} is not a URL: {e}"))?;
        let scheme = uri.scheme_str().unwrap_or_default().to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(format!(
                "{source}: {scheme} proxies are not supported: use an http:// or https:// proxy"
            ));
        }
        let authority = uri
            .authority()
            .filter(|a| !a.host().is_empty())
            .ok_or_else(|| format!("{source} {value:?} names no proxy host"))?;
        let host_port = authority
            .as_str()
            .rsplit_once('@')
            .map_or(authority.as_str(), |(_, rest)| rest);
        let proxy = ureq::Proxy::new(&with_scheme)
            .map_err(|e| format!("{source} {value:?} is not usable: {e}"))?;
        Ok(ProxyUrl {
            proxy,
            shown: format!("{scheme}://{host_port}"),
        })
    }

    /// The proxy for ureq's request configuration.
    pub(crate) fn ureq(&self) -> ureq::Proxy {
        self.proxy.clone()
    }
}

impl std::fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl std::fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProxyUrl({})", self.shown)
    }
}

/// The proxy settings of the environment: which proxy serves which scheme, and the `NO_PROXY` exceptions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyConfig {
    http: Option<ProxyUrl>,
    https: Option<ProxyUrl>,
    no_proxy: NoProxy,
}

impl ProxyConfig {
    /// Reads `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY` (upper case first, then lower case).
    pub(crate) fn from_env() -> Result<ProxyConfig, String> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`ProxyConfig::from_env`], with the variables looked up by `env`.
    pub fn from_lookup(env: impl Fn(&str) -> Option<String>) -> Result<ProxyConfig, String> {
        let any = |names: [&'static str; 2]| -> Option<(&'static str, String)> {
            names.into_iter().find_map(|name| {
                env(name)
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| (name, v))
            })
        };
        let proxy = |names: [&'static str; 2]| {
            any(names)
                .map(|(name, value)| ProxyUrl::parse(&value, name))
                .transpose()
        };
        Ok(ProxyConfig {
            http: proxy(["HTTP_PROXY", "http_proxy"])?,
            https: proxy(["HTTPS_PROXY", "https_proxy"])?,
            no_proxy: NoProxy::parse(
                &any(["NO_PROXY", "no_proxy"])
                    .map(|(_, v)| v)
                    .unwrap_or_default(),
            ),
        })
    }

    /// The proxy for a request to `url`, or `None` to connect directly.
    pub(crate) fn proxy_for(&self, url: &str) -> Option<&ProxyUrl> {
        let target = Target::parse(url)?;
        let proxy = match target.scheme.as_str() {
            "https" => self.https.as_ref(),
            "http" => self.http.as_ref(),
            _ => None,
        }?;
        self.no_proxy.allows_proxy(&target).then_some(proxy)
    }
}

/// The host and port a URL addresses, as Go's `canonicalAddr` gives them.
struct Target {
    scheme: String,
    /// Lower case, without IPv6 brackets.
    host: String,
    ip: Option<IpAddr>,
    port: String,
}

impl Target {
    fn parse(url: &str) -> Option<Target> {
        let uri: Uri = url.parse().ok()?;
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let written = uri.host()?;
        let bare = written
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(written);
        let port = match uri.port_u16() {
            Some(port) => port.to_string(),
            None if scheme == "https" => "443".to_string(),
            None if scheme == "http" => "80".to_string(),
            None => String::new(),
        };
        Some(Target {
            ip: parse_ip(bare),
            host: bare.to_string(),
            scheme,
            port,
        })
    }
}

/// An IP literal; a zone (`fe80::1%eth0`) is not part of the address.
fn parse_ip(text: &str) -> Option<IpAddr> {
    let address = text.split_once('%').map_or(text, |(a, _)| a);
    address.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// The parsed `NO_PROXY` list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct NoProxy {
    everything: bool,
    ips: Vec<IpRule>,
    domains: Vec<DomainRule>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum IpRule {
    Exact { ip: IpAddr, port: String },
    Network { network: IpAddr, prefix: u8 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct DomainRule {
    /// Always begins with a dot.
    suffix: String,
    port: String,
    /// Written without a leading dot: matches the domain itself too.
    matches_itself: bool,
}

impl NoProxy {
    fn parse(list: &str) -> NoProxy {
        let mut rules = NoProxy::default();
        for entry in list.split(',') {
            let entry = entry.trim().to_ascii_lowercase();
            if entry.is_empty() {
                continue;
            }
            if entry == "*" {
                return NoProxy {
                    everything: true,
                    ..NoProxy::default()
                };
            }
            if let Some((network, prefix)) = parse_cidr(&entry) {
                rules.ips.push(IpRule::Network { network, prefix });
                continue;
            }
            let (host, port) = match split_host_port(&entry) {
                Some((host, _)) if host.is_empty() => continue,
                Some((host, port)) => {
                    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
                        Some(inner) => (inner.to_string(), port),
                        None => (host, port),
                    }
                }
                None => (entry.clone(), String::new()),
            };
            if let Ok(ip) = host.parse::<IpAddr>() {
                rules.ips.push(IpRule::Exact {
                    ip: ip.to_canonical(),
                    port,
                });
                continue;
            }
            if host.is_empty() {
                continue;
            }
            let host = host
                .strip_prefix('*')
                .filter(|h| h.starts_with('.'))
                .map_or(host.clone(), str::to_string);
            let matches_itself = !host.starts_with('.');
            rules.domains.push(DomainRule {
                suffix: if matches_itself {
                    format!(".{host}")
                } else {
                    host
                },
                port,
                matches_itself,
            });
        }
        rules
    }

    /// Go's `useProxy`: false for localhost, loopback and every host an entry matches.
    fn allows_proxy(&self, target: &Target) -> bool {
        if target.host == "localhost" {
            return false;
        }
        if target.ip.is_some_and(|ip| ip.is_loopback()) {
            return false;
        }
        if self.everything {
            return false;
        }
        let host = target.host.to_ascii_lowercase();
        let port_matches = |port: &str| port.is_empty() || port == target.port;
        if let Some(ip) = target.ip {
            let listed = self.ips.iter().any(|rule| match rule {
                IpRule::Exact { ip: listed, port } => *listed == ip && port_matches(port),
                IpRule::Network { network, prefix } => in_network(ip, *network, *prefix),
            });
            return !listed;
        }
        !self.domains.iter().any(|rule| {
            (host.ends_with(&rule.suffix) || (rule.matches_itself && host == rule.suffix[1..]))
                && port_matches(&rule.port)
        })
    }
}

/// `addr/len` as Go's `net.ParseCIDR` reads it (host bits may be set; the network is what counts).
fn parse_cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (address, prefix) = text.split_once('/')?;
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) || prefix.len() > 3 {
        return None;
    }
    let prefix: u8 = prefix.parse().ok()?;
    let ip: IpAddr = address.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some((ip, prefix))
}

fn in_network(ip: IpAddr, network: IpAddr, prefix: u8) -> bool {
    match (ip, network) {
        (IpAddr::V4(ip), IpAddr::V4(network)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(network) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(network)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(network) & mask
        }
        _ => false,
    }
}

/// Go's `net.SplitHostPort`: `host:port` or `[host]:port`; `None` when there is no port part (or too many
/// colons, as in a bare IPv6 address).
fn split_host_port(text: &str) -> Option<(String, String)> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':')?;
        if port.contains([':', '[', ']']) {
            return None;
        }
        return Some((format!("[{host}]"), port.to_string()));
    }
    let (host, port) = text.split_once(':')?;
    if port.contains(':') || host.contains(['[', ']']) || port.contains(['[', ']']) {
        return None;
    }
    Some((host.to_string(), port.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(no_proxy: &str) -> ProxyConfig {
        let no_proxy = no_proxy.to_string();
        ProxyConfig::from_lookup(move |name| match name {
            "HTTPS_PROXY" => Some("https-proxy:3128".to_string()),
            "HTTP_PROXY" => Some("http://http-proxy:3128".to_string()),
            "NO_PROXY" => Some(no_proxy.clone()),
            _ => None,
        })
        .unwrap()
    }

    /// Cases from Go's own table (`proxy_test.go`, `TestUseProxy`/`TestInvalidNoProxy`) and its documentation.
    #[test]
    fn no_proxy_follows_go() {
        let cases: &[(&str, &str, bool)] = &[
            // (NO_PROXY, URL, proxied)
            ("", "https://api.example.com", true),
            ("", "https://localhost:6443", false),
            ("", "https://127.0.0.1:6443", false),
            ("", "https://127.1.2.3", false),
            ("", "https://[::1]:6443", false),
            ("", "https://[::ffff:127.0.0.1]", false),
            ("*", "https://api.example.com", false),
            ("*", "https://10.0.0.1", false),
            ("example.com", "https://example.com", false),
            ("example.com", "https://api.example.com", false),
            ("example.com", "https://notexample.com", true),
            (".example.com", "https://example.com", true),
            (".example.com", "https://api.example.com", false),
            ("*.example.com", "https://example.com", true),
            ("*.example.com", "https://a.b.example.com", false),
            ("EXAMPLE.com", "https://API.Example.COM", false),
            ("example.com:443", "https://example.com", false),
            ("example.com:8443", "https://example.com", true),
            ("example.com:8443", "https://example.com:8443", false),
            ("example.com:80", "http://example.com", false),
            ("10.0.0.0/8", "https://10.96.0.1", false),
            ("10.0.0.0/8", "https://11.0.0.1", true),
            ("10.0.0.0/8", "https://ten.example.com", true),
            ("10.1.2.3/8", "https://10.200.0.1", false),
            ("10.96.0.1", "https://10.96.0.1:443", false),
            ("10.96.0.1", "https://10.96.0.2", true),
            ("10.96.0.1:443", "https://10.96.0.1", false),
            ("10.96.0.1:6443", "https://10.96.0.1", true),
            ("fd00::/8", "https://[fd00::1]", false),
            ("fd00::/8", "https://[fe80::1]", true),
            ("fd00::1", "https://[fd00::1]:443", false),
            ("[fd00::1]:443", "https://[fd00::1]", false),
            ("[fd00::1]:80", "https://[fd00::1]", true),
            ("[fd00::1]", "https://[fd00::1]", true),
            (" a.com , ,b.com ", "https://b.com", false),
            ("a.com,b.com", "https://c.com", true),
            ("10.0.0.1", "https://[::ffff:10.0.0.1]", false),
            ("example.com", "https://10.0.0.1", true),
            ("1.2.3.4", "https://1.2.3.4.example.com", true),
            (":80", "http://example.com", true),
            ("com", "https://example.com", false),
            ("xample.com", "https://example.com", true),
        ];
        for (no_proxy, url, proxied) in cases {
            let got = config(no_proxy).proxy_for(url).is_some();
            assert_eq!(got, *proxied, "NO_PROXY={no_proxy:?} {url}");
        }
    }

    #[test]
    fn the_scheme_picks_the_proxy() {
        let config = config("");
        assert_eq!(
            config.proxy_for("https://a.example").unwrap().to_string(),
            "http://https-proxy:3128"
        );
        assert_eq!(
            config.proxy_for("http://a.example").unwrap().to_string(),
            "http://http-proxy:3128"
        );
        let only_http = ProxyConfig::from_lookup(|name| {
            (name == "http_proxy").then(|| "http://p:1".to_string())
        })
        .unwrap();
        assert!(only_http.proxy_for("https://a.example").is_none());
        assert!(only_http.proxy_for("http://a.example").is_some());
    }

    #[test]
    fn upper_case_wins_and_empty_counts_as_unset() {
        let config = ProxyConfig::from_lookup(|name| match name {
            "HTTPS_PROXY" => Some(String::new()),
            "https_proxy" => Some("http://lower:1".to_string()),
            "NO_PROXY" => Some("upper.example".to_string()),
            "no_proxy" => Some("lower.example".to_string()),
            _ => None,
        })
        .unwrap();
        assert_eq!(
            config
                .proxy_for("https://lower.example")
                .unwrap()
                .to_string(),
            "http://lower:1"
        );
        assert!(config.proxy_for("https://upper.example").is_none());
    }

    #[test]
    fn proxy_urls_are_checked_and_shown_without_credentials() {
        let url = ProxyUrl::parse("http://user:secret@proxy.corp:8080", "HTTPS_PROXY").unwrap();
        assert_eq!(url.to_string(), "http://proxy.corp:8080");
        assert!(!format!("{url:?}").contains("secret"));
        assert_eq!(
            ProxyUrl::parse("socks5://p:1080", "HTTPS_PROXY").unwrap_err(),
            "HTTPS_PROXY: socks5 proxies are not supported: use an http:// or https:// proxy"
        );
    }
}
