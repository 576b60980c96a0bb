//! Who is calling: the organisation from the client certificate, the acting
//! professional from the request metadata. Done once per call, here, giving a
//! typed [`Caller`]; the call's tracing span gets the organisation, the
//! professional and the certificate fingerprint.
//!
//! The TLS layer has already verified the certificate chain, validity and
//! revocation; this module reads the OIN from the subject's serialNumber
//! (OID 2.5.4.5, as PKIoverheid certificates carry it) and checks that the
//! organisation is allowed and the professional is one of its active ones.

use std::{
    collections::HashMap,
    fmt,
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
};

use samenop_proto::PROFESSIONAL_METADATA_KEY;
use tonic::Request;
use x509_parser::{
    prelude::{FromDer, X509Certificate},
    time::ASN1Time,
};

use crate::{
    audit::CallAudit,
    config::Organisation,
    domain::{Oin, Professional, ProfessionalId, Role},
    error::{ServiceError, ServiceResult},
    store::{directory::Directory, records::Stored},
};

/// The OID of the X.520 serialNumber attribute (2.5.4.5).
const SERIAL_NUMBER_OID: &str = "2.5.4.5";

/// At most this many client certificates' facts are kept (see
/// [`Authenticator`]); a server has one or a few per organisation.
const CERTIFICATES_KEPT: usize = 4096;

/// The SHA-256 fingerprint of a client certificate (DER), shown in hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of(der: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(digest.as_ref());
        Fingerprint(bytes)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One write of 64 hex digits: formatted for every call's span and
        // audit event.
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0u8; 64];
        for (i, byte) in self.0.iter().enumerate() {
            hex[2 * i] = DIGITS[usize::from(byte >> 4)];
            hex[2 * i + 1] = DIGITS[usize::from(byte & 0x0f)];
        }
        f.write_str(std::str::from_utf8(&hex).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// The organisation behind a connection, from its verified certificate.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The organisation's OIN.
    pub organisation: Oin,
    /// The certificate's fingerprint, recorded with every audited call.
    pub certificate: Fingerprint,
    /// The network address the call came from.
    pub remote: Option<SocketAddr>,
}

/// A fully identified caller: an allowed organisation acting for one of its
/// active professionals.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The connection's organisation and certificate.
    pub peer: Peer,
    /// The acting professional, as stored when the call began (with the
    /// bytes read: the precondition of a change to their own record).
    pub professional: Stored<Professional>,
    /// The call's audit event, which the handler completes.
    pub audit: CallAudit,
}

impl Caller {
    /// Refuses the call unless the professional holds `role`, which the
    /// audit then records as the role the call was authorised under.
    ///
    /// # Errors
    /// [`ServiceError::PermissionDenied`] naming the role needed.
    pub fn require(&self, role: Role) -> ServiceResult<()> {
        if self.professional.has_role(role) {
            self.audit.role(role);
            Ok(())
        } else {
            Err(ServiceError::PermissionDenied(format!(
                "this call needs the role {}",
                role.name()
            )))
        }
    }
}

/// What a client certificate says, read from it once.
#[derive(Clone)]
struct CertificateFacts {
    /// When it becomes valid and when it expires.
    validity: (ASN1Time, ASN1Time),
    /// The OIN in its subject serialNumber, if it has one.
    oin: Option<Oin>,
}

impl CertificateFacts {
    /// Parses `der`; `None` when it cannot be parsed.
    fn read(der: &[u8]) -> Option<Self> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let validity = cert.validity();
        let oin = cert
            .subject()
            .iter_attributes()
            .find(|attr| attr.attr_type().to_id_string() == SERIAL_NUMBER_OID)
            .and_then(|attribute| attribute.as_str().ok())
            .and_then(|text| Oin::parse("subject serialNumber", text).ok());
        Some(CertificateFacts {
            validity: (validity.not_before, validity.not_after),
            oin,
        })
    }

    /// The OIN, if the certificate is valid now and has one.
    fn oin_now(&self) -> ServiceResult<Oin> {
        let now = ASN1Time::now();
        // The handshake checked validity when the connection was made; an
        // HTTP/2 connection can outlive the certificate, so check again on
        // every call.
        if now < self.validity.0 || now > self.validity.1 {
            return Err(ServiceError::Unauthenticated(
                "the client certificate is not valid at this time (expired or not yet valid)"
                    .into(),
            ));
        }
        self.oin.clone().ok_or_else(|| {
            ServiceError::Unauthenticated(
                "the client certificate carries no OIN (20 digits) in its subject serialNumber"
                    .into(),
            )
        })
    }
}

/// Identifies callers: the allowed organisations and the directory.
#[derive(Clone)]
pub struct Authenticator {
    /// The organisations allowed by configuration, by OIN.
    organisations: Arc<HashMap<Oin, Organisation>>,
    /// Where professionals are looked up.
    directory: Directory,
    /// What each client certificate seen says, by fingerprint: parsing the
    /// certificate on every call cost a tenth of a read's server time. Its
    /// validity is still checked against the clock on every call.
    certificates: Arc<Mutex<HashMap<Fingerprint, CertificateFacts>>>,
}

impl Authenticator {
    /// An authenticator for `organisations` over `directory`.
    pub fn new(organisations: &[Organisation], directory: Directory) -> Self {
        let organisations = organisations
            .iter()
            .map(|org| (org.oin.clone(), org.clone()))
            .collect();
        Authenticator {
            organisations: Arc::new(organisations),
            directory,
            certificates: Arc::default(),
        }
    }

    /// Whether the organisation `oin` is allowed on this server (listed in
    /// its configuration): professionals of an organisation removed from
    /// it stay in the directory, but can no longer connect.
    pub fn allows(&self, oin: &Oin) -> bool {
        self.organisations.contains_key(oin)
    }

    /// The configured name of the organisation `oin`, if it is listed.
    pub fn organisation_name(&self, oin: &Oin) -> Option<&str> {
        self.organisations.get(oin).map(|org| org.name.as_str())
    }

    /// Identifies the organisation of the request's connection.
    ///
    /// # Errors
    /// UNAUTHENTICATED without a certificate or without an OIN in it;
    /// PERMISSION_DENIED when the organisation is not allowed.
    pub fn peer<T>(&self, request: &Request<T>) -> ServiceResult<Peer> {
        let certs = request.peer_certs().ok_or_else(|| {
            ServiceError::Unauthenticated("the connection has no client certificate".into())
        })?;
        let leaf = certs.first().ok_or_else(|| {
            ServiceError::Unauthenticated("the connection has no client certificate".into())
        })?;
        let audit = CallAudit::of(request);
        // The audit layer took it from the same connection already.
        let certificate = audit
            .certificate()
            .unwrap_or_else(|| Fingerprint::of(leaf.as_ref()));
        let span = tracing::Span::current();
        span.record("cert", tracing::field::display(&certificate));
        let organisation = self
            .organisation_of(&certificate, leaf.as_ref())
            .inspect_err(|_| audit.peer(None, &certificate))?;
        audit.peer(Some(&organisation), &certificate);
        span.record("org", tracing::field::display(&organisation));
        if !self.organisations.contains_key(&organisation) {
            return Err(ServiceError::PermissionDenied(format!(
                "organisation {organisation} is not allowed on this server"
            )));
        }
        Ok(Peer {
            organisation,
            certificate,
            remote: request.remote_addr(),
        })
    }

    /// The OIN of the client certificate `der`, whose fingerprint is
    /// `certificate`, read once per certificate (see [`oin_of`]).
    fn organisation_of(&self, certificate: &Fingerprint, der: &[u8]) -> ServiceResult<Oin> {
        let kept = self
            .certificates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(certificate)
            .cloned();
        let facts = match kept {
            Some(facts) => facts,
            None => {
                let facts = CertificateFacts::read(der).ok_or_else(|| {
                    ServiceError::Unauthenticated("the client certificate cannot be parsed".into())
                })?;
                let mut kept = self
                    .certificates
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if kept.len() >= CERTIFICATES_KEPT {
                    kept.clear();
                }
                kept.insert(*certificate, facts.clone());
                facts
            }
        };
        facts.oin_now()
    }

    /// Identifies the caller: the connection's organisation and the acting
    /// professional named in the metadata.
    ///
    /// # Errors
    /// UNAUTHENTICATED when the professional metadata is missing or not an
    /// id; PERMISSION_DENIED when it names no active professional of the
    /// caller's organisation (one message for all of these cases, so nothing
    /// is learnt about other organisations' professionals).
    pub async fn caller<T>(&self, request: &Request<T>) -> ServiceResult<Caller> {
        let peer = self.peer(request)?;
        let id = professional_id(request)?;
        tracing::Span::current().record("professional", tracing::field::display(id));
        let audit = CallAudit::of(request);
        audit.professional(id);
        let refused = || {
            ServiceError::PermissionDenied(format!(
                "professional {id} is not an active professional of organisation {}",
                peer.organisation
            ))
        };
        let professional = self.directory.professional(id).await?.ok_or_else(refused)?;
        if professional.organisation != peer.organisation || !professional.is_active() {
            return Err(refused());
        }
        Ok(Caller {
            peer,
            professional,
            audit,
        })
    }
}

fn professional_id<T>(request: &Request<T>) -> ServiceResult<ProfessionalId> {
    let value = request
        .metadata()
        .get(PROFESSIONAL_METADATA_KEY)
        .ok_or_else(|| {
            ServiceError::Unauthenticated(format!(
                "request metadata {PROFESSIONAL_METADATA_KEY} (the acting professional's id) is missing"
            ))
        })?;
    let malformed = || {
        ServiceError::Unauthenticated(format!(
            "request metadata {PROFESSIONAL_METADATA_KEY} is not a professional id (a canonical UUID)"
        ))
    };
    let text = value.to_str().map_err(|_| malformed())?;
    ProfessionalId::parse(PROFESSIONAL_METADATA_KEY, text).map_err(|_| malformed())
}

/// Reads the OIN from a certificate's subject serialNumber, checking that
/// the certificate is valid now.
///
/// # Errors
/// UNAUTHENTICATED when it cannot be parsed, is not valid now, or has no
/// OIN.
pub(crate) fn oin_of(der: &[u8]) -> ServiceResult<Oin> {
    CertificateFacts::read(der)
        .ok_or_else(|| {
            ServiceError::Unauthenticated("the client certificate cannot be parsed".into())
        })?
        .oin_now()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(from: i64, until: i64) -> CertificateFacts {
        let time = |secs| ASN1Time::from_timestamp(secs).expect("a time");
        CertificateFacts {
            validity: (time(from), time(until)),
            oin: Some(Oin::parse("oin", "00000001234567890000").expect("an OIN")),
        }
    }

    #[test]
    fn a_fingerprint_is_the_certificate_s_sha256_in_lowercase_hex() {
        // SHA-256 of "abc" (FIPS 180-2, appendix B.1).
        assert_eq!(
            Fingerprint::of(b"abc").to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn kept_facts_are_checked_against_the_clock_on_every_call() {
        let now = ASN1Time::now().timestamp();
        assert!(facts(now - 60, now + 3600).oin_now().is_ok());
        // Expired since it was first read, or not valid yet.
        for kept in [facts(now - 3600, now - 1), facts(now + 60, now + 3600)] {
            let err = kept.oin_now().expect_err("refused");
            assert!(
                matches!(&err, ServiceError::Unauthenticated(m) if m.contains("not valid at this time")),
                "{err:?}"
            );
        }
    }
}
