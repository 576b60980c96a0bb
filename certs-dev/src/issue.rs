//! Building the CAs, certificates and the CRL in memory, with rcgen.
//!
//! Every key is ECDSA P-256 (`PKCS_ECDSA_P256_SHA256`) and every certificate gets a
//! random 126-bit serial number from the operating system's random source.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rcgen::string::PrintableString;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer,
    DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, RevocationReason, RevokedCertParams, SanType,
    SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use time::{Duration, OffsetDateTime};

use crate::{Error, Organisation};

/// The object identifier of the X.520 `serialNumber` subject attribute (2.5.4.5), which
/// PKIoverheid certificates use for the organisation's OIN.
const SERIAL_NUMBER_ATTRIBUTE: [u64; 4] = [2, 5, 4, 5];

/// The period in which a certificate is valid.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Validity {
    /// The first moment of validity.
    not_before: OffsetDateTime,
    /// The last moment of validity.
    not_after: OffsetDateTime,
}

impl Validity {
    /// From a day before `now` (so small clock differences do not matter) to two years on.
    pub(crate) fn normal(now: OffsetDateTime) -> Self {
        Self {
            not_before: now - Duration::days(1),
            not_after: now + Duration::days(2 * 365),
        }
    }

    /// From a month before `now` until yesterday: expired.
    pub(crate) fn expired(now: OffsetDateTime) -> Self {
        Self {
            not_before: now - Duration::days(30),
            not_after: now - Duration::days(1),
        }
    }
}

/// A freshly issued certificate with its private key.
pub(crate) struct Issued {
    /// The certificate, PEM.
    pub(crate) cert_pem: String,
    /// The private key, PKCS#8 PEM.
    pub(crate) key_pem: String,
    /// The certificate's serial number, to list it in a CRL.
    pub(crate) serial: SerialNumber,
}

/// A self-signed certificate authority that issues certificates and CRLs.
pub(crate) struct Authority {
    /// The CA's certificate, parameters and signing key.
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Authority {
    /// Creates a self-signed CA with this common name, allowed to sign certificates and CRLs.
    pub(crate) fn new(common_name: &str, validity: Validity) -> Result<Self, Error> {
        let mut params = params(validity);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.serial_number = Some(random_serial()?);
        let key = new_key()?;
        let issuer = CertifiedIssuer::self_signed(params, key).map_err(|source| Error::Build {
            what: format!("the CA certificate \"{common_name}\""),
            source,
        })?;
        Ok(Self { issuer })
    }

    /// The CA's certificate, PEM.
    pub(crate) fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA's private key, PKCS#8 PEM.
    pub(crate) fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Issues the server's certificate: `localhost`, `127.0.0.1` and `::1`, serverAuth.
    pub(crate) fn issue_server(&self, validity: Validity) -> Result<Issued, Error> {
        let mut params = params(validity);
        params
            .distinguished_name
            .push(DnType::CommonName, "samenop development server");
        params.subject_alt_names = vec![
            SanType::DnsName("localhost".try_into().map_err(|source| Error::Build {
                what: "the server's DNS name".to_owned(),
                source,
            })?),
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params, "the server certificate")
    }

    /// Issues a client certificate for `organisation`: O = its name, CN = `common_name`,
    /// serialNumber = its OIN, clientAuth.
    pub(crate) fn issue_client(
        &self,
        organisation: &Organisation,
        common_name: &str,
        validity: Validity,
    ) -> Result<Issued, Error> {
        self.issue_client_with(organisation, common_name, validity, true)
    }

    /// Like [`Authority::issue_client`], optionally without the serialNumber (OIN).
    pub(crate) fn issue_client_with(
        &self,
        organisation: &Organisation,
        common_name: &str,
        validity: Validity,
        with_oin: bool,
    ) -> Result<Issued, Error> {
        let oin = PrintableString::try_from(organisation.oin).map_err(|source| Error::Build {
            what: format!("the OIN of {}", organisation.slug),
            source,
        })?;
        let mut params = params(validity);
        params.distinguished_name.push(DnType::CountryName, "NL");
        params
            .distinguished_name
            .push(DnType::OrganizationName, organisation.name);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        if with_oin {
            params.distinguished_name.push(
                DnType::CustomDnType(SERIAL_NUMBER_ATTRIBUTE.to_vec()),
                DnValue::PrintableString(oin),
            );
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params, &format!("the client certificate \"{common_name}\""))
    }

    /// Signs a CRL that lists `revoked`, valid from `now` for a year, with CRL number 1.
    pub(crate) fn crl_pem(
        &self,
        revoked: &[SerialNumber],
        now: OffsetDateTime,
    ) -> Result<String, Error> {
        let params = CertificateRevocationListParams {
            this_update: now,
            next_update: now + Duration::days(365),
            crl_number: SerialNumber::from(1),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|serial| RevokedCertParams {
                    serial_number: serial.clone(),
                    revocation_time: now,
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params
            .signed_by(&self.issuer)
            .and_then(|crl| crl.pem())
            .map_err(|source| Error::Build {
                what: "the CRL".to_owned(),
                source,
            })
    }

    /// Gives `params` a new key and signs them; `what` names the certificate in errors.
    fn issue(&self, mut params: CertificateParams, what: &str) -> Result<Issued, Error> {
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let serial = random_serial()?;
        params.serial_number = Some(serial.clone());
        let key = new_key()?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|source| Error::Build {
                what: what.to_owned(),
                source,
            })?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial,
        })
    }
}

/// Parameters with this validity and an empty subject (instead of rcgen's default one).
fn params(validity: Validity) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    params.distinguished_name = DistinguishedName::new();
    params
}

/// A new ECDSA P-256 key pair.
fn new_key() -> Result<KeyPair, Error> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|source| Error::Build {
        what: "an ECDSA P-256 key".to_owned(),
        source,
    })
}

/// A random positive serial number of 16 bytes whose first byte is 0x40..=0x7f, so
/// its DER encoding is always exactly 16 bytes and never needs a leading zero.
fn random_serial() -> Result<SerialNumber, Error> {
    let mut bytes = [0_u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Random)?;
    bytes[0] = (bytes[0] & 0x3f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}
