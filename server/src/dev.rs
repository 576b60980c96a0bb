//! `dev` mode: the development PKI, a local data directory and the demo
//! network, so a newcomer runs the whole service with one command.

use std::{fmt::Write as _, net::SocketAddr, path::Path};

use samenop_certs_dev::{DEMO_ORGANISATIONS, PkiPaths};

use crate::{
    bootstrap::DemoPerson,
    config::Config,
    config::{ConfigError, FileConfig, FileOrganisation, FileTls, Overrides},
};

/// Creates the development PKI under `pki` when it is missing; returns
/// whether it was created.
///
/// # Errors
/// [`ConfigError::Invalid`] when the PKI cannot be written.
pub fn ensure_pki(pki: &PkiPaths) -> Result<bool, ConfigError> {
    samenop_certs_dev::ensure(pki, DEMO_ORGANISATIONS)
        .map_err(|e| ConfigError::Invalid(format!("cannot create the development PKI: {e}")))
}

/// The configuration of `dev` mode: loopback only, the development PKI,
/// every demo organisation allowed.
///
/// # Errors
/// [`ConfigError`] when the PKI files are unusable or `listen` is not loopback.
pub fn config(pki: &PkiPaths, data_dir: &Path, listen: SocketAddr) -> Result<Config, ConfigError> {
    config_on(pki, data_dir, listen, None)
}

/// Like [`config`], with the data in the PostgreSQL database `postgres`
/// names (a connection string or URL) instead of the embedded store.
///
/// # Errors
/// As [`config`].
pub fn config_on(
    pki: &PkiPaths,
    data_dir: &Path,
    listen: SocketAddr,
    postgres: Option<String>,
) -> Result<Config, ConfigError> {
    if !listen.ip().is_loopback() {
        return Err(ConfigError::Invalid(format!(
            "dev mode listens on loopback only, not on {listen}"
        )));
    }
    let file = FileConfig {
        listen: Some(listen.to_string()),
        // `dev` binds its own admin listener (`--admin-listen`).
        admin_listen: Some("off".into()),
        data_dir: Some(data_dir.to_owned()),
        store: None,
        postgres: None,
        checkpoint_kib: None,
        shutdown_grace_seconds: Some(5),
        handshake_timeout_seconds: None,
        sweep_interval_seconds: None,
        audit_key: None,
        audit_checkpoint_interval_seconds: None,
        retention: Default::default(),
        tls: FileTls {
            certificate: pki.server_cert(),
            private_key: pki.server_key(),
            client_ca: vec![pki.ca_cert()],
            crls: vec![pki.crl()],
        },
        limits: Default::default(),
        organisations: DEMO_ORGANISATIONS
            .iter()
            .map(|org| FileOrganisation {
                oin: org.oin.to_owned(),
                name: org.name.to_owned(),
                bootstrap_admin: None,
                bootstrap_admin_name: None,
            })
            .collect(),
    };
    let base = std::env::current_dir().map_err(|e| ConfigError::Invalid(e.to_string()))?;
    let overrides = Overrides {
        postgres_url: postgres,
        ..Overrides::default()
    };
    file.check(overrides, &base)
}

/// The file in the development PKI's directory that lists the demo network
/// for tools (`samenop profile import-dev`): the server, each organisation
/// with its certificate and key, and each demo professional with id, roles
/// and expertise. No secret is in it; the keys stay in their own files.
pub const NETWORK_FILE: &str = "demo-network.json";

/// Writes [`NETWORK_FILE`] for the network `dev` serves on `listen`.
///
/// # Errors
/// [`ConfigError::Invalid`] when the file cannot be written.
pub fn write_network(
    pki: &PkiPaths,
    listen: SocketAddr,
    admin: Option<SocketAddr>,
    people: &[DemoPerson],
) -> Result<(), ConfigError> {
    let organisations: Vec<_> = DEMO_ORGANISATIONS
        .iter()
        .map(|org| {
            serde_json::json!({
                "slug": org.slug,
                "name": org.name,
                "oin": org.oin,
                "kind": org.kind,
                "certificate": pki.org_cert(org.slug),
                "key": pki.org_key(org.slug),
            })
        })
        .collect();
    let people: Vec<_> = people
        .iter()
        .map(|person| {
            let p = &person.professional;
            serde_json::json!({
                "organisation": person.organisation,
                "id": p.id.to_string(),
                "name": p.display_name.as_str(),
                "roles": p.roles.iter().map(|r| r.name().trim_start_matches("ROLE_")).collect::<Vec<_>>(),
                "expertise": p.expertise.iter().map(|e| expertise_code(*e)).collect::<Vec<_>>(),
            })
        })
        .collect();
    let network = serde_json::json!({
        "server": format!("https://localhost:{}", listen.port()),
        "metrics": admin.map(|a| format!("http://{a}/metrics")),
        "ca": pki.ca_cert(),
        "organisations": organisations,
        "people": people,
    });
    let text = serde_json::to_string_pretty(&network)
        .map_err(|e| ConfigError::Invalid(format!("cannot describe the demo network: {e}")))?;
    std::fs::write(pki.dir.join(NETWORK_FILE), text)
        .map_err(|e| ConfigError::Invalid(format!("cannot write {NETWORK_FILE}: {e}")))
}

/// An expertise as the tools name it: CHILD, ADULT, or the violence type
/// (PARTNER_VIOLENCE, …).
pub(crate) fn expertise_code(expertise: crate::domain::Expertise) -> String {
    match expertise {
        crate::domain::Expertise::Child => "CHILD".to_owned(),
        crate::domain::Expertise::Adult => "ADULT".to_owned(),
        crate::domain::Expertise::Violence(kind) => kind
            .as_str_name()
            .trim_start_matches("VIOLENCE_TYPE_")
            .to_owned(),
    }
}

/// Where a connection string leads, without its password:
/// `user@host:port/database`.
fn redacted(url: &str) -> String {
    use tokio_postgres::config::Host;
    let Ok(parsed) = url.parse::<tokio_postgres::Config>() else {
        return "an unreadable connection string".into();
    };
    let host = match parsed.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".into(),
    };
    format!(
        "{}@{host}:{}/{}",
        parsed.get_user().unwrap_or(""),
        parsed.get_ports().first().copied().unwrap_or(5432),
        parsed.get_dbname().unwrap_or("")
    )
}

/// What `dev` prints once it serves: where everything is, who is in the demo
/// network, and how to make a first call.
pub fn welcome(
    pki: &PkiPaths,
    config: &Config,
    listen: SocketAddr,
    admin: Option<SocketAddr>,
    people: &[DemoPerson],
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "samenop dev server on {listen} (gRPC over mutual TLS, TLS 1.3)"
    );
    match &config.store {
        crate::config::StoreChoice::Embedded => {
            let _ = writeln!(out, "  data directory: {}", config.data_dir.display());
        }
        crate::config::StoreChoice::Postgres(postgres) => {
            let _ = writeln!(
                out,
                "  store: PostgreSQL ({}); audit key in {}",
                redacted(&postgres.url),
                config.data_dir.display()
            );
        }
    }
    if let Some(admin) = admin {
        let _ = writeln!(
            out,
            "  metrics: http://{admin}/metrics  health: http://{admin}/health (plain HTTP)"
        );
    }
    let _ = writeln!(out, "  CA certificate: {}", pki.ca_cert().display());
    let _ = writeln!(
        out,
        "  development PKI only: never use these certificates in production"
    );
    let _ = writeln!(
        out,
        "\nDemo network (acting professional ids go in metadata `samenop-professional`):"
    );
    for org in DEMO_ORGANISATIONS {
        let _ = writeln!(out, "\n  {} (OIN {}, {})", org.name, org.oin, org.kind);
        let _ = writeln!(
            out,
            "    certificate {}  key {}",
            pki.org_cert(org.slug).display(),
            pki.org_key(org.slug).display()
        );
        for person in people.iter().filter(|p| p.organisation == org.slug) {
            let p = &person.professional;
            let roles: Vec<&str> = p
                .roles
                .iter()
                .map(|r| r.name().trim_start_matches("ROLE_"))
                .collect();
            let expertise: Vec<String> = p.expertise.iter().map(|e| expertise_code(*e)).collect();
            let _ = writeln!(
                out,
                "    {}  {:<26} {}{}",
                p.id,
                p.display_name.as_str(),
                roles.join(","),
                if expertise.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", expertise.join(", "))
                }
            );
        }
    }
    if let (Some(org), Some(someone)) = (
        DEMO_ORGANISATIONS.first(),
        people
            .iter()
            .find(|p| p.organisation == DEMO_ORGANISATIONS[0].slug),
    ) {
        let _ = writeln!(out, "\nTry it with grpcurl (server reflection is on):");
        let _ = writeln!(
            out,
            "  grpcurl -cacert {} -cert {} -key {} \\\n    -H 'samenop-professional: {}' \\\n    localhost:{} samenop.v1.DirectoryService/ListSpecialists",
            pki.ca_cert().display(),
            pki.org_cert(org.slug).display(),
            pki.org_key(org.slug).display(),
            someone.professional.id,
            listen.port()
        );
    }
    let server = if listen.port() == 7443 {
        String::new()
    } else {
        format!(" --server https://localhost:{}", listen.port())
    };
    let _ = writeln!(
        out,
        "\nor with the command line (cargo install --path client-lib/cli):\n  samenop profile import-dev --pki {pki}\n  samenop demo{server} --pki {pki}",
        pki = pki.dir.display(),
    );
    let _ = writeln!(
        out,
        "\nor from Rust with samenop-client: Client::connect(ClientConfig {{ .. }}). Ctrl-C stops."
    );
    out
}
