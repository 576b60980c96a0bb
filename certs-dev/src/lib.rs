//! The development PKI of samenop: a CA, a server certificate, one client certificate per
//! organisation of the demo network, a CRL, and certificates for negative tests.
//!
//! **Development and tests only.** The keys lie unencrypted on disk and the CA is made up;
//! never use these certificates in production.
//!
//! The client certificates imitate Dutch government (PKIoverheid) certificates: the
//! organisation's 20-digit OIN is the subject's `serialNumber` attribute (OID 2.5.4.5),
//! which is where the server reads the calling organisation from.
//!
//! # Layout
//!
//! - [`Organisation`] and [`DEMO_ORGANISATIONS`] (`organisation.rs`): the made-up
//!   organisations of the demo network, and the checks on a list of them.
//! - [`PkiPaths`] (`paths.rs`): where each file lives inside the PKI's directory.
//! - [`generate`] and [`ensure`]: build everything in memory, then write it.
//! - `issue.rs`: the CAs, certificates and CRL, built with rcgen (ECDSA P-256 throughout).
//! - `files.rs`: writing files, private keys with mode 0600 from the moment they exist.
//!
//! # Example
//!
//! ```no_run
//! use samenop_certs_dev::{DEMO_ORGANISATIONS, PkiPaths, ensure};
//!
//! let paths = PkiPaths::new("certs-dev/generated");
//! let generated = ensure(&paths, DEMO_ORGANISATIONS)?;
//! println!("generated: {generated}; trust anchor: {}", paths.ca_cert().display());
//! # Ok::<(), samenop_certs_dev::Error>(())
//! ```

use std::io;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::issue::{Authority, Issued, Validity};

mod files;
mod issue;
mod organisation;
mod paths;

pub use crate::organisation::{DEMO_ORGANISATIONS, Organisation};
pub use crate::paths::PkiPaths;

/// The common name of the development CA.
const CA_COMMON_NAME: &str = "samenop development CA (NOT FOR PRODUCTION)";

/// The common name of the second CA, which the server does not trust.
const UNTRUSTED_CA_COMMON_NAME: &str = "samenop untrusted test CA (NOT FOR PRODUCTION)";

/// Why the development PKI could not be generated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No organisations were given; the test certificates are issued for the first one.
    #[error("no organisations given: the test certificates are issued for the first one")]
    NoOrganisations,
    /// An organisation's slug or OIN cannot be used, or is not unique.
    #[error("organisation {slug:?}: {reason}")]
    InvalidOrganisation {
        /// The slug of the organisation.
        slug: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// rcgen could not build a key, a certificate or the CRL.
    #[error("cannot build {what}")]
    Build {
        /// What was being built.
        what: String,
        /// rcgen's error.
        #[source]
        source: rcgen::Error,
    },
    /// The operating system's random source failed while drawing a serial number.
    #[error("the operating system's random source failed")]
    Random,
    /// A file or directory could not be created or written.
    #[error("cannot write {}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

/// Generates the whole PKI into `paths.dir`, creating directories and overwriting any
/// existing files: a new CA, so certificates generated earlier are no longer trusted.
///
/// Everything is built in memory before the first file is written. The CA certificate
/// is removed first and written last, so an interrupted run never leaves a PKI that
/// [`PkiPaths::exists`] takes for complete.
///
/// # Errors
///
/// [`Error::NoOrganisations`] or [`Error::InvalidOrganisation`] when `organisations` is
/// empty or holds a bad slug or OIN (20 ASCII digits) or a duplicate; [`Error::Build`]
/// or [`Error::Random`] when a key or certificate cannot be made; [`Error::Io`] when a
/// directory or file cannot be written.
pub fn generate(paths: &PkiPaths, organisations: &[Organisation]) -> Result<(), Error> {
    let first = organisation::validate(organisations)?;
    let now = OffsetDateTime::now_utc();
    let normal = Validity::normal(now);

    let ca = Authority::new(CA_COMMON_NAME, normal)?;
    let server = ca.issue_server(normal)?;
    let orgs = organisations
        .iter()
        .map(|org| Ok((org, ca.issue_client(org, &system_name(org, ""), normal)?)))
        .collect::<Result<Vec<_>, Error>>()?;
    let expired = ca.issue_client(
        first,
        &system_name(first, " (expired test certificate)"),
        Validity::expired(now),
    )?;
    let revoked = ca.issue_client(
        first,
        &system_name(first, " (revoked test certificate)"),
        normal,
    )?;
    let no_oin = ca.issue_client_with(
        first,
        &system_name(first, " (test certificate without OIN)"),
        normal,
        false,
    )?;
    let crl = ca.crl_pem(std::slice::from_ref(&revoked.serial), now)?;
    let untrusted_ca = Authority::new(UNTRUSTED_CA_COMMON_NAME, normal)?;
    let untrusted = untrusted_ca.issue_client(
        first,
        &system_name(first, " (untrusted test certificate)"),
        normal,
    )?;

    files::create_dir(&paths.orgs_dir())?;
    files::create_dir(&paths.test_dir())?;
    files::remove_if_present(&paths.ca_cert())?;
    files::write_key(&paths.ca_key(), &ca.key_pem())?;
    write_issued(&paths.server_cert(), &paths.server_key(), &server)?;
    files::write_public(&paths.crl(), &crl)?;
    for (org, issued) in &orgs {
        write_issued(&paths.org_cert(org.slug), &paths.org_key(org.slug), issued)?;
    }
    write_issued(&paths.expired_cert(), &paths.expired_key(), &expired)?;
    write_issued(&paths.revoked_cert(), &paths.revoked_key(), &revoked)?;
    write_issued(&paths.no_oin_cert(), &paths.no_oin_key(), &no_oin)?;
    files::write_public(&paths.untrusted_ca_cert(), &untrusted_ca.cert_pem())?;
    write_issued(&paths.untrusted_cert(), &paths.untrusted_key(), &untrusted)?;
    files::write_public(&paths.ca_cert(), &ca.cert_pem())
}

/// Generates the PKI (as [`generate`]) only when a file is missing: one of
/// [`PkiPaths::exists`] or the certificate or key of one of `organisations`.
///
/// Returns whether it generated. Existing certificates are not checked for expiry;
/// after two years, regenerate with [`generate`].
///
/// # Errors
///
/// As [`generate`], when it generates.
pub fn ensure(paths: &PkiPaths, organisations: &[Organisation]) -> Result<bool, Error> {
    if paths.exists_for(organisations) {
        return Ok(false);
    }
    generate(paths, organisations)?;
    Ok(true)
}

/// The common name of a client certificate of `org`: `"<name> system"` and `suffix`.
fn system_name(org: &Organisation, suffix: &str) -> String {
    format!("{} system{suffix}", org.name)
}

/// Writes an issued certificate and its key.
fn write_issued(cert: &Path, key: &Path, issued: &Issued) -> Result<(), Error> {
    files::write_key(key, &issued.key_pem)?;
    files::write_public(cert, &issued.cert_pem)
}

#[cfg(test)]
// Tests fail loudly on any surprise; that is what expect is for here.
#[allow(clippy::expect_used)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

    use tempfile::TempDir;
    use x509_parser::certificate::X509Certificate;
    use x509_parser::extensions::GeneralName;
    use x509_parser::oid_registry::OID_X509_SERIALNUMBER;
    use x509_parser::pem::Pem;
    use x509_parser::prelude::FromDer;
    use x509_parser::revocation_list::CertificateRevocationList;
    use x509_parser::time::ASN1Time;

    use super::*;

    /// A PKI of the demo organisations generated into a fresh temporary directory.
    fn generated() -> (TempDir, PkiPaths) {
        let dir = TempDir::new().expect("temporary directory");
        let paths = PkiPaths::new(dir.path().join("pki"));
        generate(&paths, DEMO_ORGANISATIONS).expect("generate");
        (dir, paths)
    }

    /// The first PEM block of the file at `path`.
    fn read_pem(path: &Path) -> Pem {
        let bytes = fs::read(path).expect("read PEM file");
        let (_, pem) = x509_parser::pem::parse_x509_pem(&bytes).expect("parse PEM");
        pem
    }

    /// Runs `check` on the certificate in the file at `path`.
    fn with_cert(path: &Path, check: impl FnOnce(&X509Certificate<'_>)) {
        let pem = read_pem(path);
        let cert = pem.parse_x509().expect("parse certificate");
        check(&cert);
    }

    /// The subject's serialNumber attribute of the certificate.
    fn subject_oin(cert: &X509Certificate<'_>) -> String {
        let mut values = cert.subject().iter_by_oid(&OID_X509_SERIALNUMBER);
        let value = values.next().expect("a serialNumber attribute");
        assert!(values.next().is_none(), "one serialNumber attribute");
        value.as_str().expect("a string").to_owned()
    }

    #[test]
    fn org_certificates_carry_the_oin_as_subject_serial_number() {
        let (_dir, paths) = generated();
        for org in DEMO_ORGANISATIONS {
            with_cert(&paths.org_cert(org.slug), |cert| {
                assert_eq!(subject_oin(cert), org.oin);
                let names: Vec<_> = cert.subject().iter_organization().collect();
                assert_eq!(names.len(), 1);
                assert_eq!(names[0].as_str().expect("O"), org.name);
                let cn = cert.subject().iter_common_name().next().expect("CN");
                assert_eq!(cn.as_str().expect("CN"), format!("{} system", org.name));
                assert!(!cert.is_ca());
                let eku = cert.extended_key_usage().expect("EKU").expect("EKU").value;
                assert!(eku.client_auth && !eku.server_auth);
            });
        }
    }

    #[test]
    fn server_certificate_names_localhost_and_both_loopback_addresses() {
        let (_dir, paths) = generated();
        with_cert(&paths.server_cert(), |cert| {
            let san = cert.subject_alternative_name().expect("SAN").expect("SAN");
            let names = &san.value.general_names;
            assert_eq!(names.len(), 3);
            assert!(names.contains(&GeneralName::DNSName("localhost")));
            assert!(names.contains(&GeneralName::IPAddress(&[127, 0, 0, 1])));
            let v6_loopback = std::net::Ipv6Addr::LOCALHOST.octets();
            assert!(names.contains(&GeneralName::IPAddress(&v6_loopback)));
            let eku = cert.extended_key_usage().expect("EKU").expect("EKU").value;
            assert!(eku.server_auth && !eku.client_auth);
        });
    }

    #[test]
    fn ca_signs_certificates_and_crls() {
        let (_dir, paths) = generated();
        with_cert(&paths.ca_cert(), |cert| {
            assert!(cert.is_ca());
            let cn = cert.subject().iter_common_name().next().expect("CN");
            assert_eq!(cn.as_str().expect("CN"), CA_COMMON_NAME);
            let usage = cert
                .key_usage()
                .expect("key usage")
                .expect("key usage")
                .value;
            assert!(usage.key_cert_sign() && usage.crl_sign());
        });
    }

    #[test]
    fn expired_certificate_ended_in_the_past() {
        let (_dir, paths) = generated();
        with_cert(&paths.expired_cert(), |cert| {
            let now = ASN1Time::now();
            assert!(cert.validity().not_after < now);
            assert!(cert.validity().not_before < cert.validity().not_after);
            assert_eq!(subject_oin(cert), DEMO_ORGANISATIONS[0].oin);
        });
        with_cert(&paths.org_cert(DEMO_ORGANISATIONS[0].slug), |cert| {
            assert!(cert.validity().is_valid());
        });
    }

    #[test]
    fn crl_lists_the_revoked_certificate_only() {
        let (_dir, paths) = generated();
        let crl_pem = read_pem(&paths.crl());
        let (_, crl) = CertificateRevocationList::from_der(&crl_pem.contents).expect("parse CRL");
        assert_eq!(
            crl.crl_number().map(ToString::to_string).as_deref(),
            Some("1")
        );
        assert!(crl.next_update().expect("next update") > ASN1Time::now());
        let revoked: Vec<_> = crl
            .iter_revoked_certificates()
            .map(|entry| entry.raw_serial().to_vec())
            .collect();
        with_cert(&paths.revoked_cert(), |cert| {
            assert_eq!(revoked, vec![cert.raw_serial().to_vec()]);
            assert!(cert.validity().is_valid());
            assert_eq!(subject_oin(cert), DEMO_ORGANISATIONS[0].oin);
        });
        with_cert(&paths.ca_cert(), |ca| {
            assert_eq!(crl.issuer(), ca.subject())
        });
    }

    #[test]
    fn untrusted_certificate_comes_from_another_ca() {
        let (_dir, paths) = generated();
        let ca_pem = read_pem(&paths.ca_cert());
        let ca = ca_pem.parse_x509().expect("CA");
        with_cert(&paths.untrusted_ca_cert(), |untrusted_ca| {
            assert!(untrusted_ca.is_ca());
            assert_ne!(untrusted_ca.subject(), ca.subject());
            with_cert(&paths.untrusted_cert(), |cert| {
                assert_eq!(cert.issuer(), untrusted_ca.subject());
                assert_eq!(subject_oin(cert), DEMO_ORGANISATIONS[0].oin);
            });
        });
    }

    #[test]
    fn every_certificate_has_a_distinct_serial_number() {
        let (_dir, paths) = generated();
        let mut files = vec![
            paths.ca_cert(),
            paths.server_cert(),
            paths.expired_cert(),
            paths.revoked_cert(),
            paths.untrusted_ca_cert(),
            paths.untrusted_cert(),
        ];
        files.extend(
            DEMO_ORGANISATIONS
                .iter()
                .map(|org| paths.org_cert(org.slug)),
        );
        let mut serials = Vec::new();
        for file in &files {
            with_cert(file, |cert| serials.push(cert.raw_serial().to_vec()));
        }
        serials.sort();
        serials.dedup();
        assert_eq!(serials.len(), files.len());
    }

    #[test]
    fn keys_are_private_and_certificates_public() {
        let dir = TempDir::new().expect("temporary directory");
        let paths = PkiPaths::new(dir.path());
        // A key file left with a wide mode must be narrowed when overwritten.
        fs::create_dir_all(paths.orgs_dir()).expect("orgs dir");
        let stale = paths.org_key(DEMO_ORGANISATIONS[0].slug);
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&stale)
            .expect("stale key file");
        fs::set_permissions(&stale, fs::Permissions::from_mode(0o644)).expect("chmod");
        generate(&paths, DEMO_ORGANISATIONS).expect("generate");

        let mode =
            |path: PathBuf| fs::metadata(path).expect("metadata").permissions().mode() & 0o777;
        let mut keys = vec![
            paths.ca_key(),
            paths.server_key(),
            paths.expired_key(),
            paths.revoked_key(),
            paths.untrusted_key(),
        ];
        keys.extend(DEMO_ORGANISATIONS.iter().map(|org| paths.org_key(org.slug)));
        for key in keys {
            assert_eq!(mode(key.clone()), 0o600, "{}", key.display());
            let pem = read_pem(&key);
            assert_eq!(pem.label, "PRIVATE KEY", "PKCS#8: {}", key.display());
        }
        assert_eq!(mode(paths.ca_cert()), 0o644);
        assert_eq!(mode(paths.crl()), 0o644);
    }

    #[test]
    fn ensure_generates_only_what_is_missing() {
        let dir = TempDir::new().expect("temporary directory");
        let paths = PkiPaths::new(dir.path().join("pki"));
        assert!(!paths.exists());
        assert!(ensure(&paths, DEMO_ORGANISATIONS).expect("first ensure"));
        assert!(paths.exists() && paths.exists_for(DEMO_ORGANISATIONS));
        let ca = fs::read(paths.ca_cert()).expect("CA");

        assert!(!ensure(&paths, DEMO_ORGANISATIONS).expect("second ensure"));
        assert_eq!(fs::read(paths.ca_cert()).expect("CA"), ca);

        fs::remove_file(paths.org_key(DEMO_ORGANISATIONS[3].slug)).expect("remove a key");
        assert!(paths.exists() && !paths.exists_for(DEMO_ORGANISATIONS));
        assert!(ensure(&paths, DEMO_ORGANISATIONS).expect("third ensure"));
        assert_ne!(fs::read(paths.ca_cert()).expect("CA"), ca);
    }

    #[test]
    fn demo_organisations_are_valid_and_clearly_made_up() {
        let first = organisation::validate(DEMO_ORGANISATIONS).expect("valid");
        assert_eq!(first.kind, "wijkteam");
        for org in DEMO_ORGANISATIONS {
            assert!(org.oin.starts_with("0000009900000000"), "{}", org.oin);
        }
        let kinds = [
            "wijkteam",
            "veilig-thuis",
            "jeugdbescherming",
            "ggz",
            "expertisecentrum",
        ];
        for kind in kinds {
            assert!(
                DEMO_ORGANISATIONS.iter().any(|org| org.kind == kind),
                "{kind}"
            );
        }
    }

    #[test]
    fn bad_organisations_are_refused_before_anything_is_written() {
        let dir = TempDir::new().expect("temporary directory");
        let paths = PkiPaths::new(dir.path().join("pki"));
        assert!(matches!(generate(&paths, &[]), Err(Error::NoOrganisations)));
        let bad = |slug, oin| Organisation {
            slug,
            name: "Test",
            oin,
            kind: "wijkteam",
        };
        for orgs in [
            vec![bad("short-oin", "123")],
            vec![bad("letters", "0000009900000000000x")],
            vec![bad("../escape", "00000099000000000001")],
            vec![bad("", "00000099000000000001")],
            vec![
                bad("same", "00000099000000000001"),
                bad("same", "00000099000000000002"),
            ],
            vec![
                bad("one", "00000099000000000001"),
                bad("two", "00000099000000000001"),
            ],
        ] {
            let result = generate(&paths, &orgs);
            assert!(
                matches!(result, Err(Error::InvalidOrganisation { .. })),
                "{orgs:?}"
            );
        }
        assert!(!paths.dir.exists());
    }
}
