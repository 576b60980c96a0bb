//! Configuration: one TOML file, parsed into typed values and fully checked
//! (TLS material loaded, organisations valid) before anything binds.
//! Command-line flags and `SAMENOP_*` environment variables override the
//! file (see `main.rs`); `samenop.example.toml` at the repository root is the
//! commented example.

use std::{
    collections::HashSet,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use serde::Deserialize;

use crate::{
    domain::{DisplayName, Oin, ProfessionalId},
    tls::{self, TlsPaths},
};

/// The largest gRPC message accepted by default (bytes).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// The default largest MLS message (commit, application message, Welcome,
/// key package) a thread stores.
pub const DEFAULT_MAX_MLS_MESSAGE_BYTES: usize = 256 * 1024;
/// The default largest attachment, in bytes (encrypted).
pub const DEFAULT_MAX_ATTACHMENT_BYTES: usize = 16 * 1024 * 1024;

/// Why a configuration is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read configuration file {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("configuration file {path} is not valid: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        reason: String,
    },
    /// A value is out of range or inconsistent.
    #[error("configuration: {0}")]
    Invalid(String),
    /// The TLS material is unusable.
    #[error("configuration: {0}")]
    Tls(#[from] tls::TlsError),
}

/// An organisation allowed to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organisation {
    /// Its OIN, as its certificates carry it.
    pub oin: Oin,
    /// Its name, for logs and listings.
    pub name: String,
    /// The professional the server registers as its first ORG_ADMIN when
    /// missing, so the organisation can register everyone else.
    pub bootstrap_admin: Option<(ProfessionalId, DisplayName)>,
}

/// Size limits applied to every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest request message accepted, in bytes.
    pub max_message_bytes: usize,
    /// The largest MLS message a thread stores, in bytes.
    pub max_mls_message_bytes: usize,
    /// The largest attachment a thread stores (encrypted), in bytes.
    pub max_attachment_bytes: usize,
}

/// How long each class of data is kept, and how often the purge runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Thread content and attachments, after their consult ended.
    pub thread: Duration,
    /// Consult metadata, after the consult ended.
    pub consult: Duration,
    /// Consents, after the family's last consult (or the consent itself)
    /// ended.
    pub consent: Duration,
    /// Audit events (at least as long as everything else).
    pub audit: Duration,
    /// How often the purge runs.
    pub interval: Duration,
}

/// The checked configuration the server runs with.
#[derive(Clone)]
pub struct Config {
    /// Where to listen (mutual TLS).
    pub listen: SocketAddr,
    /// The data directory: the embedded store's, and the audit key's by
    /// default.
    pub data_dir: PathBuf,
    /// Where the data is kept.
    pub store: StoreChoice,
    /// Bytes of changes the embedded store holds in memory (and in its
    /// journal) before a checkpoint writes them into its file.
    pub checkpoint_bytes: usize,
    /// The TLS configuration built from the configured files.
    pub tls: Arc<rustls::ServerConfig>,
    /// The organisations allowed to connect.
    pub organisations: Vec<Organisation>,
    /// Size limits.
    pub limits: Limits,
    /// How long a TLS handshake may take.
    pub handshake_timeout: Duration,
    /// How long in-flight calls get to finish at shutdown.
    pub shutdown_grace: Duration,
    /// How often the sweep expires requests and suspends consults whose
    /// consent ran out.
    pub sweep_interval: Duration,
    /// The audit key file (Ed25519, PKCS#8; made when missing).
    pub audit_key: PathBuf,
    /// How often the audit chain is checkpointed (when it grew).
    pub audit_checkpoint_interval: Duration,
    /// How long data is kept.
    pub retention: Retention,
    /// Where the admin listener serves `/metrics` and `/health` over plain
    /// HTTP; `None` when it is off.
    pub admin_listen: Option<SocketAddr>,
}

/// Where the server keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// The embedded store (redb) in the data directory: one server.
    Embedded,
    /// A PostgreSQL database: several replicas may share it.
    Postgres(crate::store::postgres::PostgresConfig),
}

/// Where the admin listener binds unless told otherwise: loopback only,
/// the port Prometheus exporters commonly take.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9464";

/// The file's shape.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Listen address, e.g. "0.0.0.0:7443".
    pub listen: Option<String>,
    /// The admin listener (`/metrics`, `/health`, plain HTTP), e.g.
    /// "127.0.0.1:9464" (the default), or "off".
    pub admin_listen: Option<String>,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// Where data is kept: "embedded" (the default: redb in the data
    /// directory) or "postgres" (the `[postgres]` table).
    pub store: Option<String>,
    /// The PostgreSQL database, with `store = "postgres"`.
    pub postgres: Option<FilePostgres>,
    /// KiB of changes the embedded store holds in memory (and in its
    /// journal) before a checkpoint writes them into its file (default
    /// 16384: 16 MiB; memory is up to four times this while checkpoints
    /// lag).
    pub checkpoint_kib: Option<usize>,
    /// Seconds in-flight calls get at shutdown.
    pub shutdown_grace_seconds: Option<u64>,
    /// Seconds a TLS handshake may take.
    pub handshake_timeout_seconds: Option<u64>,
    /// Seconds between sweeps (request expiry, consent ending).
    pub sweep_interval_seconds: Option<u64>,
    /// The audit key file; default `audit-ed25519.pk8` in the data
    /// directory.
    pub audit_key: Option<PathBuf>,
    /// Seconds between audit checkpoints.
    pub audit_checkpoint_interval_seconds: Option<u64>,
    /// TLS files.
    pub tls: FileTls,
    /// Limits.
    #[serde(default)]
    pub limits: FileLimits,
    /// Retention.
    #[serde(default)]
    pub retention: FileRetention,
    /// Allowed organisations.
    #[serde(default)]
    pub organisations: Vec<FileOrganisation>,
}

/// The `[postgres]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePostgres {
    /// A libpq connection string or URL.
    pub url: String,
    /// Connections per replica (default 16).
    pub pool_size: Option<usize>,
    /// Seconds one statement may run (default 30).
    pub statement_timeout_seconds: Option<u64>,
    /// CA certificate(s) of the database server's certificate: TLS is then
    /// required and checked.
    pub ca_file: Option<PathBuf>,
}

/// The `[retention]` table: days per data class.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRetention {
    /// Days thread content and attachments are kept after their consult
    /// ended.
    pub thread_days_after_close: Option<u64>,
    /// Days consult metadata is kept after the consult ended.
    pub consult_days_after_close: Option<u64>,
    /// Days consents are kept after the family's last consult ended.
    pub consent_days_after_last_consult: Option<u64>,
    /// Days audit events are kept.
    pub audit_days: Option<u64>,
    /// Seconds between purges.
    pub purge_interval_seconds: Option<u64>,
}

impl FileRetention {
    fn check(&self) -> Result<Retention, ConfigError> {
        const DAY: u64 = 24 * 3600;
        let days = |value: Option<u64>, default: u64, name: &str| match value.unwrap_or(default) {
            d @ 1..=36_500 => Ok(Duration::from_secs(d * DAY)),
            _ => Err(ConfigError::Invalid(format!(
                "retention.{name} must be between 1 and 36500"
            ))),
        };
        let retention = Retention {
            thread: days(self.thread_days_after_close, 180, "thread_days_after_close")?,
            consult: days(
                self.consult_days_after_close,
                730,
                "consult_days_after_close",
            )?,
            consent: days(
                self.consent_days_after_last_consult,
                730,
                "consent_days_after_last_consult",
            )?,
            audit: days(self.audit_days, 2555, "audit_days")?,
            interval: match self.purge_interval_seconds.unwrap_or(3600) {
                s @ 1..=86_400 => Duration::from_secs(s),
                _ => {
                    return Err(ConfigError::Invalid(
                        "retention.purge_interval_seconds must be between 1 and 86400".into(),
                    ));
                }
            },
        };
        if retention.thread > retention.consult {
            return Err(ConfigError::Invalid(
                "retention.thread_days_after_close may not exceed consult_days_after_close".into(),
            ));
        }
        if retention.audit < retention.consult.max(retention.consent) {
            return Err(ConfigError::Invalid(
                "retention.audit_days must be at least as long as the consult and consent \
                 retention: the trail must outlive what it accounts for"
                    .into(),
            ));
        }
        Ok(retention)
    }
}

/// The `[tls]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTls {
    /// Server certificate chain (PEM).
    pub certificate: PathBuf,
    /// Server private key (PEM).
    pub private_key: PathBuf,
    /// Client CA certificates (PEM).
    pub client_ca: Vec<PathBuf>,
    /// Certificate revocation lists (PEM).
    #[serde(default)]
    pub crls: Vec<PathBuf>,
}

/// The `[limits]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    /// Largest request message, bytes.
    pub max_message_bytes: Option<usize>,
    /// Largest MLS message a thread stores, bytes.
    pub max_mls_message_bytes: Option<usize>,
    /// Largest attachment a thread stores (encrypted), bytes.
    pub max_attachment_bytes: Option<usize>,
}

/// One `[[organisations]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOrganisation {
    /// The OIN (20 digits).
    pub oin: String,
    /// The name.
    pub name: String,
    /// Id of the first ORG_ADMIN to register when missing.
    pub bootstrap_admin: Option<String>,
    /// That admin's display name.
    pub bootstrap_admin_name: Option<String>,
}

/// Values that override the file (from flags or the environment).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Replaces `listen`.
    pub listen: Option<String>,
    /// Replaces `data_dir`.
    pub data_dir: Option<PathBuf>,
    /// Replaces `admin_listen`.
    pub admin_listen: Option<String>,
    /// Replaces the store with this PostgreSQL database (its URL).
    pub postgres_url: Option<String>,
}

impl FileConfig {
    /// Reads and parses a configuration file.
    ///
    /// # Errors
    /// [`ConfigError::Read`] or [`ConfigError::Parse`].
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }

    /// Applies overrides, resolves relative paths against `base` (the
    /// file's directory), checks every value and loads the TLS material.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first value that is wrong.
    pub fn check(self, overrides: Overrides, base: &Path) -> Result<Config, ConfigError> {
        let listen_text = overrides.listen.or(self.listen).ok_or_else(|| {
            ConfigError::Invalid("listen is required (e.g. \"127.0.0.1:7443\")".into())
        })?;
        let listen = listen_text.parse().map_err(|_| {
            ConfigError::Invalid(format!("listen {listen_text:?} is not an address:port"))
        })?;
        let admin_text = overrides
            .admin_listen
            .or(self.admin_listen)
            .unwrap_or_else(|| DEFAULT_ADMIN_LISTEN.to_owned());
        let admin_listen = if admin_text == "off" {
            None
        } else {
            Some(admin_text.parse().map_err(|_| {
                ConfigError::Invalid(format!(
                    "admin_listen {admin_text:?} is neither an address:port nor \"off\""
                ))
            })?)
        };
        let data_dir = overrides
            .data_dir
            .or(self.data_dir)
            .ok_or_else(|| ConfigError::Invalid("data_dir is required".into()))?;
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                base.join(p)
            }
        };
        let tls_paths = TlsPaths {
            certificate: resolve(&self.tls.certificate),
            private_key: resolve(&self.tls.private_key),
            client_ca: self.tls.client_ca.iter().map(|p| resolve(p)).collect(),
            crls: self.tls.crls.iter().map(|p| resolve(p)).collect(),
        };
        let max_message_bytes = self
            .limits
            .max_message_bytes
            .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES);
        if !(1024..=64 * 1024 * 1024).contains(&max_message_bytes) {
            return Err(ConfigError::Invalid(
                "limits.max_message_bytes must be between 1024 and 67108864".into(),
            ));
        }
        let max_mls_message_bytes = self
            .limits
            .max_mls_message_bytes
            .unwrap_or(DEFAULT_MAX_MLS_MESSAGE_BYTES);
        if !(1024..=max_message_bytes / 2).contains(&max_mls_message_bytes) {
            return Err(ConfigError::Invalid(
                "limits.max_mls_message_bytes must be between 1024 and half of \
                 limits.max_message_bytes"
                    .into(),
            ));
        }
        let max_attachment_bytes = self
            .limits
            .max_attachment_bytes
            .unwrap_or(DEFAULT_MAX_ATTACHMENT_BYTES);
        if !(1024..=1024 * 1024 * 1024).contains(&max_attachment_bytes) {
            return Err(ConfigError::Invalid(
                "limits.max_attachment_bytes must be between 1024 and 1073741824".into(),
            ));
        }
        let handshake_seconds = self.handshake_timeout_seconds.unwrap_or(10);
        if !(1..=300).contains(&handshake_seconds) {
            return Err(ConfigError::Invalid(
                "handshake_timeout_seconds must be between 1 and 300".into(),
            ));
        }
        let sweep_seconds = self.sweep_interval_seconds.unwrap_or(30);
        if !(1..=3600).contains(&sweep_seconds) {
            return Err(ConfigError::Invalid(
                "sweep_interval_seconds must be between 1 and 3600".into(),
            ));
        }
        let checkpoint_seconds = self.audit_checkpoint_interval_seconds.unwrap_or(300);
        if !(1..=86_400).contains(&checkpoint_seconds) {
            return Err(ConfigError::Invalid(
                "audit_checkpoint_interval_seconds must be between 1 and 86400".into(),
            ));
        }
        let checkpoint_kib = self.checkpoint_kib.unwrap_or(16 * 1024);
        if !(64..=1024 * 1024).contains(&checkpoint_kib) {
            return Err(ConfigError::Invalid(
                "checkpoint_kib must be between 64 and 1048576".into(),
            ));
        }
        let retention = self.retention.check()?;
        let organisations = check_organisations(self.organisations)?;
        let store = check_store(
            self.store.as_deref(),
            self.postgres,
            overrides.postgres_url,
            &resolve,
        )?;
        Ok(Config {
            listen,
            data_dir: resolve(&data_dir),
            store,
            checkpoint_bytes: checkpoint_kib * 1024,
            tls: tls::server_config(&tls_paths)?,
            organisations,
            limits: Limits {
                max_message_bytes,
                max_mls_message_bytes,
                max_attachment_bytes,
            },
            handshake_timeout: Duration::from_secs(handshake_seconds),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_seconds.unwrap_or(10)),
            sweep_interval: Duration::from_secs(sweep_seconds),
            audit_key: self.audit_key.as_deref().map_or_else(
                || resolve(&data_dir).join(crate::audit_key::DEFAULT_FILE),
                resolve,
            ),
            audit_checkpoint_interval: Duration::from_secs(checkpoint_seconds),
            retention,
            admin_listen,
        })
    }
}

/// The store configured: `store` and `[postgres]`, or a PostgreSQL URL that
/// overrides both.
fn check_store(
    kind: Option<&str>,
    postgres: Option<FilePostgres>,
    url_override: Option<String>,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Result<StoreChoice, ConfigError> {
    let kind = if url_override.is_some() {
        "postgres"
    } else {
        kind.unwrap_or("embedded")
    };
    match kind {
        "embedded" => Ok(StoreChoice::Embedded),
        "postgres" => {
            let file = match (postgres, url_override) {
                (Some(mut file), Some(url)) => {
                    file.url = url;
                    file
                }
                (Some(file), None) => file,
                (None, Some(url)) => FilePostgres {
                    url,
                    pool_size: None,
                    statement_timeout_seconds: None,
                    ca_file: None,
                },
                (None, None) => {
                    return Err(ConfigError::Invalid(
                        "store = \"postgres\" needs a [postgres] table with its url".into(),
                    ));
                }
            };
            let pool_size = file.pool_size.unwrap_or(16);
            if !(2..=1000).contains(&pool_size) {
                return Err(ConfigError::Invalid(
                    "postgres.pool_size must be between 2 and 1000".into(),
                ));
            }
            let timeout = file.statement_timeout_seconds.unwrap_or(30);
            if !(1..=3600).contains(&timeout) {
                return Err(ConfigError::Invalid(
                    "postgres.statement_timeout_seconds must be between 1 and 3600".into(),
                ));
            }
            Ok(StoreChoice::Postgres(
                crate::store::postgres::PostgresConfig {
                    url: file.url,
                    pool_size,
                    statement_timeout: Duration::from_secs(timeout),
                    ca_file: file.ca_file.as_deref().map(resolve),
                },
            ))
        }
        other => Err(ConfigError::Invalid(format!(
            "store {other:?} is neither \"embedded\" nor \"postgres\""
        ))),
    }
}

fn check_organisations(raw: Vec<FileOrganisation>) -> Result<Vec<Organisation>, ConfigError> {
    if raw.is_empty() {
        return Err(ConfigError::Invalid(
            "no [[organisations]] configured: no one could connect".into(),
        ));
    }
    let mut seen = HashSet::new();
    let mut admins = HashSet::new();
    let mut organisations = Vec::with_capacity(raw.len());
    for org in raw {
        let oin = Oin::parse("oin", &org.oin).map_err(|_| {
            ConfigError::Invalid(format!(
                "organisation {:?}: oin must be 20 digits",
                org.name
            ))
        })?;
        if !seen.insert(oin.clone()) {
            return Err(ConfigError::Invalid(format!(
                "organisation {oin} is listed twice"
            )));
        }
        let bootstrap_admin = match org.bootstrap_admin {
            None => None,
            Some(raw_id) => {
                let id = ProfessionalId::parse("bootstrap_admin", &raw_id).map_err(|_| {
                    ConfigError::Invalid(format!(
                        "organisation {oin}: bootstrap_admin must be a canonical UUID"
                    ))
                })?;
                if !admins.insert(id) {
                    return Err(ConfigError::Invalid(format!(
                        "bootstrap_admin {id} is listed for two organisations"
                    )));
                }
                let name = org
                    .bootstrap_admin_name
                    .as_deref()
                    .unwrap_or("Organisation admin");
                let name = DisplayName::parse("bootstrap_admin_name", name)
                    .map_err(|e| ConfigError::Invalid(format!("organisation {oin}: {e}")))?;
                Some((id, name))
            }
        };
        organisations.push(Organisation {
            oin,
            name: org.name,
            bootstrap_admin,
        });
    }
    Ok(organisations)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FileConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn unknown_keys_are_refused() {
        let text = r#"
            listen = "127.0.0.1:1"
            colour = "blue"
            [tls]
            certificate = "a"
            private_key = "b"
            client_ca = ["c"]
        "#;
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn the_example_configuration_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samenop.example.toml");
        let file = FileConfig::read(&path).unwrap();
        assert_eq!(file.organisations.len(), 2);
        assert!(check_organisations(file.organisations).is_ok());
    }

    #[test]
    fn organisations_are_checked() {
        let org = |oin: &str, admin: Option<&str>| FileOrganisation {
            oin: oin.into(),
            name: "Org".into(),
            bootstrap_admin: admin.map(Into::into),
            bootstrap_admin_name: None,
        };
        assert!(check_organisations(vec![]).is_err());
        assert!(check_organisations(vec![org("123", None)]).is_err());
        let oin = "00000099000000000001";
        assert!(check_organisations(vec![org(oin, None), org(oin, None)]).is_err());
        assert!(check_organisations(vec![org(oin, Some("not-a-uuid"))]).is_err());
        let ok = check_organisations(vec![org(oin, Some("0190a5b0-0000-7000-8000-000000000001"))]);
        assert_eq!(ok.map(|o| o.len()).ok(), Some(1));
    }
}
