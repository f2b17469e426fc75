//! Name resolution for every HTTPS client of this process (the Kubernetes client and the providers).
//!
//! ureq resolves a request's host before it looks in its connection pool, and with a timeout set (ours always
//! are) it does so on a thread it starts for that lookup. So every request — even one that goes out on a
//! pooled connection and never uses the addresses — started a thread and asked the DNS: five threads per
//! provisioned ServiceAccount, and in a pod (ndots:5) up to six queries to the cluster DNS per request.
//!
//! What must stay true: an IP address is taken as it is, without a lookup or a thread; a name is looked up
//! by ureq's own resolver (with its timeout) and its addresses are reused for [`REUSE_FOR`] — less than a
//! pooled connection already keeps talking to one address (ureq keeps idle connections 15 s), so a moved
//! endpoint is found no later than before; a failed lookup is never reused, so the next request asks again.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sync::lock;
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long a name's addresses are reused after a successful lookup.
pub(crate) const REUSE_FOR: Duration = Duration::from_secs(10);

/// Past this many remembered names, expired ones are dropped (a process talks to a handful of hosts).
const PRUNE_AT: usize = 64;

/// Resolves through `lookup` (ureq's resolver unless a test says otherwise), IP addresses excepted, and
/// reuses what a name resolved to for [`REUSE_FOR`].
#[derive(Debug)]
pub(crate) struct ReusingResolver<R = DefaultResolver> {
    lookup: R,
    reuse_for: Duration,
    resolved: Mutex<HashMap<String, (Instant, ResolvedSocketAddrs)>>,
}

impl Default for ReusingResolver {
    fn default() -> Self {
        ReusingResolver::new(DefaultResolver::default(), REUSE_FOR)
    }
}

impl<R: Resolver> ReusingResolver<R> {
    pub(crate) fn new(lookup: R, reuse_for: Duration) -> Self {
        ReusingResolver {
            lookup,
            reuse_for,
            resolved: Mutex::new(HashMap::new()),
        }
    }
}

/// The address `uri` names when its host is an IP address (with the scheme's port when it gives none).
fn literal_address(uri: &Uri) -> Option<SocketAddr> {
    let authority = uri.authority()?;
    let host = authority.host();
    let ip: IpAddr = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .parse()
        .ok()?;
    let port = authority.port_u16().or(match uri.scheme_str()? {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    })?;
    Some(SocketAddr::new(ip, port))
}

/// What a name's lookup is remembered under: scheme, host and port.
fn reuse_key(uri: &Uri) -> String {
    format!(
        "{}://{}",
        uri.scheme_str().unwrap_or(""),
        uri.authority().map(|a| a.as_str()).unwrap_or("")
    )
}

impl<R: Resolver> Resolver for ReusingResolver<R> {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        if let Some(address) = literal_address(uri) {
            let mut addresses = self.empty();
            addresses.push(address);
            return Ok(addresses);
        }
        let key = reuse_key(uri);
        let now = Instant::now();
        {
            let resolved = lock(&self.resolved);
            if let Some((at, addresses)) = resolved.get(&key) {
                if now.saturating_duration_since(*at) < self.reuse_for {
                    return Ok(addresses.clone());
                }
            }
        }
        // Looked up without holding the lock: a slow DNS must not stall requests to other hosts.
        let addresses = self.lookup.resolve(uri, config, timeout)?;
        let mut resolved = lock(&self.resolved);
        if resolved.len() >= PRUNE_AT {
            resolved.retain(|_, (at, _)| now.saturating_duration_since(*at) < self.reuse_for);
        }
        resolved.insert(key, (now, addresses.clone()));
        Ok(addresses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Answers every name with 192.0.2.1 (or fails while `failing`), counting the lookups.
    #[derive(Debug, Default, Clone)]
    struct Counting {
        lookups: Arc<AtomicUsize>,
        failing: Arc<std::sync::atomic::AtomicBool>,
    }

    impl Resolver for Counting {
        fn resolve(
            &self,
            uri: &Uri,
            _: &Config,
            _: NextTimeout,
        ) -> Result<ResolvedSocketAddrs, ureq::Error> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            if self.failing.load(Ordering::SeqCst) {
                return Err(ureq::Error::HostNotFound);
            }
            let mut addresses = self.empty();
            let port = uri.port_u16().unwrap_or(443);
            addresses.push(SocketAddr::new("192.0.2.1".parse().unwrap(), port));
            Ok(addresses)
        }
    }

    fn resolve(resolver: &impl Resolver, url: &str) -> Result<Vec<SocketAddr>, ureq::Error> {
        let config = Config::builder().build();
        let uri: Uri = url.parse().unwrap();
        resolver
            .resolve(&uri, &config, NextTimeout::default())
            .map(|a| a.iter().copied().collect())
    }

    #[test]
    fn ip_addresses_are_taken_as_they_are_without_a_lookup() {
        let lookup = Counting::default();
        let resolver = ReusingResolver::new(lookup.clone(), REUSE_FOR);
        for (url, address) in [
            ("https://10.96.0.1/api", "10.96.0.1:443"),
            ("https://10.96.0.1:6443/api", "10.96.0.1:6443"),
            ("http://127.0.0.1:8080/v1/token", "127.0.0.1:8080"),
            ("http://127.0.0.1/", "127.0.0.1:80"),
            ("https://[fd00::1]/api", "[fd00::1]:443"),
            ("https://[::1]:6443/api", "[::1]:6443"),
        ] {
            assert_eq!(
                resolve(&resolver, url).unwrap(),
                vec![address.parse::<SocketAddr>().unwrap()],
                "{url}"
            );
        }
        assert_eq!(lookup.lookups.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_name_is_looked_up_once_within_the_reuse_time_per_host_and_port() {
        let lookup = Counting::default();
        let resolver = ReusingResolver::new(lookup.clone(), Duration::from_secs(3600));
        for _ in 0..5 {
            assert_eq!(
                resolve(&resolver, "https://sts.amazonaws.com/").unwrap(),
                vec!["192.0.2.1:443".parse::<SocketAddr>().unwrap()]
            );
        }
        assert_eq!(lookup.lookups.load(Ordering::SeqCst), 1);
        // Another port or another host is another lookup.
        assert_eq!(
            resolve(&resolver, "https://sts.amazonaws.com:8443/").unwrap(),
            vec!["192.0.2.1:8443".parse::<SocketAddr>().unwrap()]
        );
        resolve(&resolver, "https://ecr.us-east-1.amazonaws.com/").unwrap();
        assert_eq!(lookup.lookups.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_name_is_looked_up_again_after_the_reuse_time() {
        let lookup = Counting::default();
        let resolver = ReusingResolver::new(lookup.clone(), Duration::ZERO);
        resolve(&resolver, "https://sts.googleapis.com/").unwrap();
        resolve(&resolver, "https://sts.googleapis.com/").unwrap();
        assert_eq!(lookup.lookups.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_failed_lookup_is_not_reused() {
        let lookup = Counting::default();
        let resolver = ReusingResolver::new(lookup.clone(), Duration::from_secs(3600));
        lookup.failing.store(true, Ordering::SeqCst);
        assert!(matches!(
            resolve(&resolver, "https://login.microsoftonline.com/"),
            Err(ureq::Error::HostNotFound)
        ));
        lookup.failing.store(false, Ordering::SeqCst);
        assert!(resolve(&resolver, "https://login.microsoftonline.com/").is_ok());
        assert!(resolve(&resolver, "https://login.microsoftonline.com/").is_ok());
        assert_eq!(lookup.lookups.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn the_real_resolver_is_asked_for_names() {
        // localhost comes from /etc/hosts: no network needed.
        let resolver = ReusingResolver::default();
        let addresses = resolve(&resolver, "http://localhost:8080/").unwrap();
        assert!(
            addresses
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 8080),
            "{addresses:?}"
        );
    }
}
