//! Where the files of a generated PKI live inside its directory.
//!
//! [`PkiPaths`] only computes paths; it never touches the disk except in
//! [`PkiPaths::exists`] and [`PkiPaths::exists_for`], which look for the files.

use std::path::PathBuf;

use crate::Organisation;

/// The paths of the files of a development PKI, all inside one directory.
///
/// Layout:
///
/// ```text
/// <dir>/ca.pem, ca.key             the development CA
/// <dir>/server.pem, server.key     the server's certificate (leaf only) and key
/// <dir>/crl.pem                    the CA's certificate revocation list
/// <dir>/orgs/<slug>.pem, .key      one client certificate per organisation
/// <dir>/test/expired.pem, .key     a client certificate whose validity has ended
/// <dir>/test/revoked.pem, .key     a client certificate listed in crl.pem
/// <dir>/test/untrusted-ca.pem      a second CA that the server does not trust
/// <dir>/test/untrusted.pem, .key   a client certificate issued by that second CA
/// ```
///
/// Each path is absolute when `dir` is, else relative to the same base as `dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiPaths {
    /// The directory that holds the whole PKI; every other path is computed from it.
    pub dir: PathBuf,
}

impl PkiPaths {
    /// Computes the paths of a PKI in `dir`, without touching the disk.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The development CA's certificate (`<dir>/ca.pem`): the trust anchor for client
    /// and server certificates alike.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The development CA's private key (`<dir>/ca.key`, PKCS#8 PEM, mode 0600).
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }

    /// The server's certificate (`<dir>/server.pem`), the leaf only, for `localhost`,
    /// `127.0.0.1` and `::1`.
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }

    /// The server's private key (`<dir>/server.key`, PKCS#8 PEM, mode 0600).
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// The development CA's certificate revocation list (`<dir>/crl.pem`).
    pub fn crl(&self) -> PathBuf {
        self.dir.join("crl.pem")
    }

    /// The client certificate of the organisation with this slug (`<dir>/orgs/<slug>.pem`).
    pub fn org_cert(&self, slug: &str) -> PathBuf {
        self.orgs_dir().join(format!("{slug}.pem"))
    }

    /// The private key of the organisation with this slug (`<dir>/orgs/<slug>.key`).
    pub fn org_key(&self, slug: &str) -> PathBuf {
        self.orgs_dir().join(format!("{slug}.key"))
    }

    /// A client certificate for the first organisation whose validity ended yesterday
    /// (`<dir>/test/expired.pem`).
    pub fn expired_cert(&self) -> PathBuf {
        self.test_dir().join("expired.pem")
    }

    /// The private key of [`expired_cert`](Self::expired_cert) (`<dir>/test/expired.key`).
    pub fn expired_key(&self) -> PathBuf {
        self.test_dir().join("expired.key")
    }

    /// A valid client certificate for the first organisation whose serial number is
    /// listed in [`crl`](Self::crl) (`<dir>/test/revoked.pem`).
    pub fn revoked_cert(&self) -> PathBuf {
        self.test_dir().join("revoked.pem")
    }

    /// The private key of [`revoked_cert`](Self::revoked_cert) (`<dir>/test/revoked.key`).
    pub fn revoked_key(&self) -> PathBuf {
        self.test_dir().join("revoked.key")
    }

    /// A second, unrelated CA that the server does not trust (`<dir>/test/untrusted-ca.pem`).
    ///
    /// Its private key is not kept: nothing needs to issue from it afterwards.
    pub fn untrusted_ca_cert(&self) -> PathBuf {
        self.test_dir().join("untrusted-ca.pem")
    }

    /// A client certificate for the first organisation, issued by the untrusted CA
    /// (`<dir>/test/untrusted.pem`).
    pub fn untrusted_cert(&self) -> PathBuf {
        self.test_dir().join("untrusted.pem")
    }

    /// The private key of [`untrusted_cert`](Self::untrusted_cert)
    /// (`<dir>/test/untrusted.key`).
    pub fn untrusted_key(&self) -> PathBuf {
        self.test_dir().join("untrusted.key")
    }

    /// A valid client certificate from the CA that carries no OIN (no
    /// subject serialNumber): trusted, but names no organisation.
    pub fn no_oin_cert(&self) -> PathBuf {
        self.test_dir().join("no-oin.pem")
    }

    /// The private key of [`no_oin_cert`](Self::no_oin_cert).
    pub fn no_oin_key(&self) -> PathBuf {
        self.test_dir().join("no-oin.key")
    }

    /// Whether every file that does not depend on the organisations is there: the CA,
    /// the server's certificate and key, the CRL and the test certificates.
    ///
    /// The organisations' own files are checked by [`exists_for`](Self::exists_for).
    pub fn exists(&self) -> bool {
        self.fixed_files().iter().all(|path| path.is_file())
    }

    /// Whether every file is there: those of [`exists`](Self::exists) and the
    /// certificate and key of each of `organisations`.
    pub fn exists_for(&self, organisations: &[Organisation]) -> bool {
        self.exists()
            && organisations
                .iter()
                .all(|org| self.org_cert(org.slug).is_file() && self.org_key(org.slug).is_file())
    }

    /// The directory of the organisations' certificates and keys (`<dir>/orgs`).
    pub(crate) fn orgs_dir(&self) -> PathBuf {
        self.dir.join("orgs")
    }

    /// The directory of the certificates for negative tests (`<dir>/test`).
    pub(crate) fn test_dir(&self) -> PathBuf {
        self.dir.join("test")
    }

    /// Every path that does not depend on the organisations.
    fn fixed_files(&self) -> [PathBuf; 14] {
        [
            self.ca_cert(),
            self.ca_key(),
            self.server_cert(),
            self.server_key(),
            self.crl(),
            self.expired_cert(),
            self.expired_key(),
            self.revoked_cert(),
            self.revoked_key(),
            self.untrusted_ca_cert(),
            self.untrusted_cert(),
            self.untrusted_key(),
            self.no_oin_cert(),
            self.no_oin_key(),
        ]
    }
}
