//! The agent's configuration: a TOML file, with the listen address and the
//! data directory overridable from the environment and the command line, as
//! the server's. [`FileConfig::check`] resolves paths against the file's
//! directory and reads everything the agent needs before anything binds, so
//! `samenop-agent check` and a start fail alike, with the same words.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

/// What can be wrong with a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid configuration.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with where.
        message: String,
    },
    /// A value is wrong.
    #[error("{0}")]
    Invalid(String),
}

/// The TOML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The samenop server: `https://host:port`.
    pub server: String,
    /// The server's name in its certificate, when it differs from the host
    /// in `server`.
    #[serde(default)]
    pub server_name: Option<String>,
    /// The CA that signed the server's certificate (PEM).
    pub ca: PathBuf,
    /// The organisation's client certificate (PEM), which carries its OIN.
    pub certificate: PathBuf,
    /// Its private key (PEM); must be readable by its owner only.
    pub key: PathBuf,
    /// The agent's data directory: the devices' keys and MLS state, and the
    /// events kept for `Watch`. One agent at a time owns it.
    pub data_dir: PathBuf,
    /// Where the agent listens: `unix:PATH` (the default is
    /// `unix:<data_dir>/run/agent.sock`) or a loopback `HOST:PORT`, which
    /// needs `token_file`.
    #[serde(default)]
    pub listen: Option<String>,
    /// A file holding the bearer token that callers present on a TCP
    /// listener (`authorization: Bearer <token>`); at least 32 characters,
    /// readable by its owner only.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Seconds a call to the server may take.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// Seconds the agent drains calls in flight at SIGTERM.
    #[serde(default = "default_grace")]
    pub shutdown_grace_seconds: u64,
}

fn default_timeout() -> u64 {
    30
}

fn default_grace() -> u64 {
    10
}

/// What the command line and the environment override.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen` / `SAMENOP_AGENT_LISTEN`.
    pub listen: Option<String>,
    /// `--data-dir` / `SAMENOP_AGENT_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
}

/// Where the agent listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A Unix socket, 0600 in a directory of its own (0700).
    Unix(PathBuf),
    /// A loopback TCP address, each call with the bearer token.
    Tcp(SocketAddr),
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Unix(path) => write!(f, "unix:{}", path.display()),
            Listen::Tcp(addr) => write!(f, "{addr}"),
        }
    }
}

/// A checked configuration, everything read.
#[derive(Clone)]
pub struct Config {
    /// The server's address.
    pub server: String,
    /// The server's certificate name, when not the host.
    pub server_name: Option<String>,
    /// The CA certificate, PEM.
    pub ca_pem: Vec<u8>,
    /// The organisation's certificate, PEM.
    pub certificate_pem: Vec<u8>,
    /// Its key, PEM.
    pub key_pem: Vec<u8>,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Where to listen.
    pub listen: Listen,
    /// The bearer token for a TCP listener.
    pub token: Option<String>,
    /// How long a call to the server may take.
    pub timeout: Duration,
    /// How long calls in flight drain at SIGTERM.
    pub shutdown_grace: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("server", &self.server)
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

impl FileConfig {
    /// Reads and parses `path`.
    ///
    /// # Errors
    /// [`ConfigError::Read`] or [`ConfigError::Parse`].
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Applies `overrides`, resolves relative paths against `base` (the
    /// file's directory) and reads the certificates, key and token.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first thing wrong.
    pub fn check(self, overrides: Overrides, base: &Path) -> Result<Config, ConfigError> {
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                base.join(p)
            }
        };
        if !(self.server.starts_with("https://")) {
            return Err(ConfigError::Invalid(format!(
                "server {:?}: give it as https://host:port (the agent speaks mutual TLS only)",
                self.server
            )));
        }
        let data_dir = resolve(&overrides.data_dir.unwrap_or(self.data_dir));
        let listen = match overrides.listen.or(self.listen) {
            None => Listen::Unix(data_dir.join("run").join("agent.sock")),
            Some(text) => parse_listen(&text, base)?,
        };
        let read = |what: &str, p: &Path| {
            let path = resolve(p);
            std::fs::read(&path).map_err(|e| {
                ConfigError::Invalid(format!("{what} {}: cannot read it: {e}", path.display()))
            })
        };
        let ca_pem = read("ca", &self.ca)?;
        let certificate_pem = read("certificate", &self.certificate)?;
        let key_path = resolve(&self.key);
        owner_only("key", &key_path)?;
        let key_pem = read("key", &self.key)?;
        let token = match (&listen, &self.token_file) {
            (Listen::Tcp(_), None) => {
                return Err(ConfigError::Invalid(
                    "a TCP listener needs token_file: the bearer token its callers present".into(),
                ));
            }
            (_, Some(file)) => {
                let path = resolve(file);
                owner_only("token_file", &path)?;
                let raw = read("token_file", file)?;
                let token = String::from_utf8(raw)
                    .map_err(|_| {
                        ConfigError::Invalid(format!("token_file {}: not text", path.display()))
                    })?
                    .trim()
                    .to_owned();
                if token.len() < 32 || !token.chars().all(|c| c.is_ascii_graphic()) {
                    return Err(ConfigError::Invalid(format!(
                        "token_file {}: the token must be at least 32 printable characters without spaces",
                        path.display()
                    )));
                }
                Some(token)
            }
            (Listen::Unix(_), None) => None,
        };
        if self.timeout_seconds == 0 {
            return Err(ConfigError::Invalid(
                "timeout_seconds must be at least 1".into(),
            ));
        }
        Ok(Config {
            server: self.server,
            server_name: self.server_name,
            ca_pem,
            certificate_pem,
            key_pem,
            data_dir,
            listen,
            token,
            timeout: Duration::from_secs(self.timeout_seconds),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_seconds),
        })
    }
}

/// `unix:PATH` or a loopback `HOST:PORT`.
fn parse_listen(text: &str, base: &Path) -> Result<Listen, ConfigError> {
    if let Some(path) = text.strip_prefix("unix:") {
        let path = Path::new(path);
        return Ok(Listen::Unix(if path.is_absolute() {
            path.to_owned()
        } else {
            base.join(path)
        }));
    }
    let addr: SocketAddr = text.parse().map_err(|_| {
        ConfigError::Invalid(format!(
            "listen {text:?}: give unix:PATH or a loopback address such as 127.0.0.1:7600"
        ))
    })?;
    if !addr.ip().is_loopback() {
        return Err(ConfigError::Invalid(format!(
            "listen {addr}: the agent listens on loopback only; its callers are on this machine"
        )));
    }
    Ok(Listen::Tcp(addr))
}

/// Refuses a secret file others may read.
fn owner_only(what: &str, path: &Path) -> Result<(), ConfigError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| {
            ConfigError::Invalid(format!("{what} {}: cannot read it: {e}", path.display()))
        })?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(ConfigError::Invalid(format!(
                "{what} {}: others may read it; make it readable by its owner only (chmod 600)",
                path.display()
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = (what, path);
    Ok(())
}
