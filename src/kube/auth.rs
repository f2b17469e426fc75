//! The credential each API request carries, and when it is renewed: a fixed token, a token file the kubelet
//! rotates, or an exec credential plugin.
//!
//! A plugin's credential is cached until its `expirationTimestamp` (forever without one) and the plugin is run
//! again when the server answers 401 to it — once per refused credential, however many requests were refused
//! with it at the same time, as client-go does. Plugins run one at a time.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ureq::tls::ClientCert;

use super::config::{client_certificate, Auth};
use super::error::Error;
use super::exec::ExecPlugin;
use crate::cloud::Sensitive;
use crate::sync::lock;

/// A rotated token file is picked up at the latest this long after it changed (or at once after a 401).
const TOKEN_FILE_REREAD: Duration = Duration::from_secs(60);

/// Where the credential of each request comes from.
pub(crate) enum Credentials {
    None,
    Fixed(Sensitive),
    File {
        path: PathBuf,
        cached: Mutex<Option<(Sensitive, Instant)>>,
    },
    Exec {
        plugin: ExecPlugin,
        cached: Mutex<Option<Arc<Issued>>>,
    },
}

/// One credential as a plugin issued it.
pub(crate) struct Issued {
    token: Option<Sensitive>,
    client_cert: Option<ClientCert>,
    expires_at: Option<DateTime<Utc>>,
}

/// What one request presents; handed back after a 401 to say which credential was refused.
pub(crate) struct Presented {
    pub token: Option<Sensitive>,
    /// A client certificate from an exec plugin, which the agent must present instead of its own.
    pub client_cert: Option<ClientCert>,
    issued: Option<Arc<Issued>>,
}

impl Credentials {
    pub(crate) fn new(auth: Auth) -> Credentials {
        match auth {
            Auth::None => Credentials::None,
            Auth::Token(token) => Credentials::Fixed(token),
            Auth::TokenFile(path) => Credentials::File {
                path,
                cached: Mutex::new(None),
            },
            Auth::Exec(plugin) => Credentials::Exec {
                plugin,
                cached: Mutex::new(None),
            },
        }
    }

    /// The credential for the next request, running the plugin or reading the file if needed.
    pub(crate) fn current(&self) -> Result<Presented, Error> {
        let token = match self {
            Credentials::None => None,
            Credentials::Fixed(token) => Some(token.clone()),
            Credentials::File { path, cached } => {
                let mut cached = lock(cached);
                match cached.as_ref() {
                    Some((token, read_at)) if read_at.elapsed() < TOKEN_FILE_REREAD => {
                        Some(token.clone())
                    }
                    _ => {
                        let text = std::fs::read_to_string(path).map_err(|e| {
                            Error::Transport(format!(
                                "cannot read token file {}: {e}",
                                path.display()
                            ))
                        })?;
                        let token = Sensitive::new(text.trim());
                        *cached = Some((token.clone(), Instant::now()));
                        Some(token)
                    }
                }
            }
            Credentials::Exec { plugin, cached } => {
                let mut cached = lock(cached);
                let fresh = cached
                    .as_ref()
                    .filter(|issued| issued.expires_at.is_none_or(|at| Utc::now() < at))
                    .cloned();
                let issued = match fresh {
                    Some(issued) => issued,
                    None => {
                        let issued = Arc::new(run(plugin)?);
                        *cached = Some(issued.clone());
                        issued
                    }
                };
                return Ok(Presented {
                    token: issued.token.clone(),
                    client_cert: issued.client_cert.clone(),
                    issued: Some(issued),
                });
            }
        };
        Ok(Presented {
            token,
            client_cert: None,
            issued: None,
        })
    }

    /// After the server answered 401 to `presented`: forgets it, and says whether the next attempt may
    /// carry a different credential (a re-read file, a new plugin run).
    pub(crate) fn refused(&self, presented: &Presented) -> bool {
        match self {
            Credentials::None | Credentials::Fixed(_) => false,
            Credentials::File { cached, .. } => {
                *lock(cached) = None;
                true
            }
            Credentials::Exec { cached, .. } => {
                let mut cached = lock(cached);
                // Only the refused credential is dropped: another request may have renewed it already.
                let same = match (cached.as_ref(), presented.issued.as_ref()) {
                    (Some(current), Some(used)) => Arc::ptr_eq(current, used),
                    _ => false,
                };
                if same {
                    *cached = None;
                }
                true
            }
        }
    }
}

fn run(plugin: &ExecPlugin) -> Result<Issued, Error> {
    let credential = plugin.run().map_err(Error::Transport)?;
    let client_cert = match &credential.client_cert {
        Some((cert, key)) => Some(client_certificate(cert, key.expose().as_bytes()).map_err(
            |e| {
                Error::Transport(format!(
                    "exec plugin {} of kubeconfig user {:?}: {e}",
                    plugin.command.display(),
                    plugin.user
                ))
            },
        )?),
        None => None,
    };
    log::debug!(
        "exec plugin {} issued a credential{}",
        plugin.command.display(),
        match credential.expires_at {
            Some(at) => format!(" valid until {}", at.to_rfc3339()),
            None => String::new(),
        }
    );
    Ok(Issued {
        token: credential.token,
        client_cert,
        expires_at: credential.expires_at,
    })
}
