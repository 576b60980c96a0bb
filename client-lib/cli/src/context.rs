//! What a command runs with: the profile, its connection acting as the
//! profile's professional, the device (opened on first use, so commands
//! that need no keys never touch them), and the printer.

use std::path::PathBuf;

use samenop_client::{Client, ClientConfig, mls::Messenger};
use uuid::Uuid;

use crate::{
    config::Profile,
    error::{CliError, Result},
    output::Printer,
};

/// One command's world.
pub(crate) struct Ctx {
    /// The profile's name.
    pub(crate) name: String,
    /// The profile.
    pub(crate) profile: Profile,
    /// The connection, acting as the profile's professional.
    pub(crate) client: Client,
    /// How results are shown.
    pub(crate) out: Printer,
    /// This machine's device of the professional, once opened.
    device: tokio::sync::OnceCell<Messenger>,
}

impl Ctx {
    /// Connects as `profile`.
    ///
    /// # Errors
    /// Configuration errors for unreadable files; unavailable when the
    /// server cannot be reached.
    pub(crate) async fn connect(name: String, profile: Profile, out: Printer) -> Result<Self> {
        let mut config = ClientConfig::from_files(
            profile.server.as_str(),
            &profile.ca,
            &profile.certificate,
            &profile.key,
        )?;
        config.server_name.clone_from(&profile.server_name);
        let client = Client::connect(config)
            .await
            .map_err(|err| match err {
                samenop_client::ClientError::Unavailable(why) => CliError::new(
                    crate::error::Class::Unavailable,
                    crate::text::cannot_reach(profile.server.as_str(), &why),
                )
                .hint(crate::text::HINT_UNAVAILABLE),
                other => other.into(),
            })?
            .acting_as(profile.professional);
        Ok(Ctx {
            name,
            profile,
            client,
            out,
            device: tokio::sync::OnceCell::new(),
        })
    }

    /// The professional acted as.
    pub(crate) fn me(&self) -> Uuid {
        self.profile.professional
    }

    /// This machine's device for the profile: its keys and MLS state in the
    /// profile's state directory, registered in the directory the first
    /// time.
    ///
    /// # Errors
    /// Local state errors, or the server's refusals.
    pub(crate) async fn device(&self) -> Result<&Messenger> {
        self.device
            .get_or_try_init(|| open_device(&self.client, &self.profile.state, &self.name))
            .await
    }

    /// A file of the profile's own in its state directory (the watch cursor,
    /// ids seen).
    pub(crate) fn state_file(&self, name: &str) -> PathBuf {
        self.profile.state.join(name)
    }

    /// Replaces the state file `name` with `bytes`, whole or not at all
    /// (written beside, then renamed). The state directory is made when
    /// missing, readable by its owner only (0700), as the device's keys
    /// will live there; the file is 0600.
    pub(crate) fn write_state(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        let mut dir = std::fs::DirBuilder::new();
        dir.recursive(true);
        let mut file = std::fs::OpenOptions::new();
        file.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
            dir.mode(0o700);
            file.mode(0o600);
        }
        dir.create(&self.profile.state)?;
        let path = self.state_file(name);
        let partial = path.with_extension("partial");
        file.open(&partial)?.write_all(bytes)?;
        std::fs::rename(&partial, &path)
    }
}

/// Opens the device in `state`, waiting a little while another samenop
/// (a `watch` between two events) holds it: a device has one owner at a
/// time.
///
/// # Errors
/// As [`Messenger::open`]; still in use after the wait, with what to do.
pub(crate) async fn open_device(
    client: &Client,
    state: &std::path::Path,
    profile: &str,
) -> Result<Messenger> {
    let mut waited = std::time::Duration::ZERO;
    let step = std::time::Duration::from_millis(100);
    loop {
        match Messenger::open(client, state, &device_label(profile)).await {
            Ok(device) => return Ok(device),
            Err(samenop_client::ClientError::DeviceInUse(_))
                if waited < crate::text::DEVICE_WAIT =>
            {
                tokio::time::sleep(step).await;
                waited += step;
            }
            Err(samenop_client::ClientError::DeviceInUse(dir)) => {
                return Err(CliError::new(
                    crate::error::Class::Failure,
                    format!("this profile's device ({dir}) is in use by another samenop"),
                )
                .hint(crate::text::HINT_DEVICE_IN_USE));
            }
            Err(other) => return Err(other.into()),
        }
    }
}

fn device_label(profile: &str) -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "this machine".into());
    format!("samenop command line ({profile}, {host})")
}
