//! Profiles: one per acting professional, in one TOML file in the
//! platform's config directory (`--config` and `SAMENOP_CONFIG` override
//! it). A profile names the server, the trust anchor, the organisation's
//! certificate and key, the professional, and the state directory of that
//! professional's device on this machine (never shared between profiles).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{CliError, Result};

/// The file's contents.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    /// The profile used when `--profile` is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) current: Option<String>,
    /// Every profile, by name.
    #[serde(default)]
    pub(crate) profiles: BTreeMap<String, Profile>,
}

/// One acting professional on one machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Profile {
    /// The server, e.g. `https://samenop.example.nl:7443`.
    pub(crate) server: String,
    /// The name the server's certificate carries, when it differs from the
    /// server address's host (dev: `localhost`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) server_name: Option<String>,
    /// The CA certificate (PEM) that signed the server's certificate.
    pub(crate) ca: PathBuf,
    /// The organisation's client certificate (PEM).
    pub(crate) certificate: PathBuf,
    /// Its private key (PEM).
    pub(crate) key: PathBuf,
    /// The acting professional's id.
    pub(crate) professional: Uuid,
    /// The device's state directory (MLS keys and state; 0700).
    pub(crate) state: PathBuf,
}

/// Where the file is: `explicit` (`--config`/`SAMENOP_CONFIG`), else the
/// platform's config directory.
///
/// # Errors
/// [`CliError::config`] when there is no config directory.
pub(crate) fn path(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_owned());
    }
    dirs::config_dir()
        .map(|dir| dir.join("samenop").join("config.toml"))
        .ok_or_else(|| CliError::config("no configuration directory: give --config FILE"))
}

/// The default state directory of profile `name`.
pub(crate) fn default_state(name: &str) -> PathBuf {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dirs::data_local_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("samenop")
        .join("devices")
        .join(safe)
}

impl Config {
    /// Reads the file at `path`; a missing file is an empty configuration.
    ///
    /// # Errors
    /// [`CliError::config`] when it cannot be read or parsed.
    pub(crate) fn load(path: &Path) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(err) => {
                return Err(CliError::config(format!(
                    "cannot read {}: {err}",
                    path.display()
                )));
            }
        };
        toml::from_str(&text).map_err(|e| {
            CliError::config(format!(
                "{} is not a valid profile file: {e}",
                path.display()
            ))
        })
    }

    /// Writes the file at `path` (mode 0600), whole or not at all.
    ///
    /// # Errors
    /// [`CliError::config`] when it cannot be written.
    pub(crate) fn save(&self, path: &Path) -> Result<()> {
        let failed = |e: &dyn std::fmt::Display| {
            CliError::config(format!("cannot write {}: {e}", path.display()))
        };
        let text = toml::to_string_pretty(self).map_err(|e| failed(&e))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| failed(&e))?;
        }
        let partial = path.with_extension("partial");
        write_private(&partial, text.as_bytes()).map_err(|e| failed(&e))?;
        std::fs::rename(&partial, path).map_err(|e| failed(&e))
    }

    /// The profile `name` (or the current one), with its name.
    ///
    /// # Errors
    /// [`CliError::config`] naming what to do when there is none.
    pub(crate) fn profile(&self, name: Option<&str>) -> Result<(String, Profile)> {
        let name = match name.or(self.current.as_deref()) {
            Some(name) => name,
            None if self.profiles.len() == 1 => {
                self.profiles.keys().next().map_or("", String::as_str)
            }
            None => {
                return Err(
                    CliError::config(crate::text::NO_PROFILE).hint(crate::text::HINT_NO_PROFILE)
                );
            }
        };
        self.profiles
            .get(name)
            .cloned()
            .map(|p| (name.to_owned(), p))
            .ok_or_else(|| {
                CliError::config(format!("there is no profile {name:?}"))
                    .hint("see `samenop profile list`")
            })
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}
