//! Small file-system helpers: directories readable by their owner only.

use std::path::Path;

/// Makes `dir` (and its parents) when missing and leaves it 0700.
///
/// # Errors
/// The I/O error.
pub(crate) fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
        if mode != 0o700 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    Ok(())
}

/// This machine's name, for labels; "this machine" when unknown.
pub(crate) fn host() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "this machine".to_owned())
}

/// Makes ready the place of the agent's Unix socket `path`: its directory
/// made (0700) when missing, or else one that only its owner may enter; a
/// socket left there by an agent that ended without cleaning up removed,
/// but nothing else: not a file that is no socket, not a socket another
/// process listens on.
///
/// # Errors
/// What is wrong, in words.
pub(crate) fn socket_place(path: &Path) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind};
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if dir.exists() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(Error::new(
                    ErrorKind::PermissionDenied,
                    format!(
                        "the socket's directory {} is open to others (mode {mode:o}); give the socket \
                         a directory of its own, which the agent makes 0700",
                        dir.display()
                    ),
                ));
            }
        }
    } else {
        private_dir(dir)?;
    }
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(meta) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::FileTypeExt;
                if !meta.file_type().is_socket() {
                    return Err(Error::new(
                        ErrorKind::AlreadyExists,
                        format!(
                            "{} is there and is not a socket; the agent leaves it",
                            path.display()
                        ),
                    ));
                }
                if std::os::unix::net::UnixStream::connect(path).is_ok() {
                    return Err(Error::new(
                        ErrorKind::AddrInUse,
                        format!("another process listens on {}", path.display()),
                    ));
                }
            }
            #[cfg(not(unix))]
            let _ = meta;
            std::fs::remove_file(path)
        }
    }
}
