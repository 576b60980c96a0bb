//! Who is calling: the organisation from the client certificate, the acting
//! professional from the request metadata. Done once per call, here, giving a
//! typed [`Caller`]; the call's tracing span gets the organisation, the
//! professional and the certificate fingerprint.
//!
//! The TLS layer has already verified the certificate chain, validity and
//! revocation; this module reads the OIN from the subject's serialNumber
//! (OID 2.5.4.5, as PKIoverheid certificates carry it) and checks that the
//! organisation is allowed and the professional is one of its active ones.

use std::{collections::HashMap, fmt, net::SocketAddr, sync::Arc};

use samenop_proto::PROFESSIONAL_METADATA_KEY;
use tonic::Request;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::{
    audit::CallAudit,
    config::Organisation,
    domain::{Oin, Professional, ProfessionalId, Role},
    error::{ServiceError, ServiceResult},
    store::directory::Directory,
};

/// The OID of the X.520 serialNumber attribute (2.5.4.5).
const SERIAL_NUMBER_OID: &str = "2.5.4.5";

/// The SHA-256 fingerprint of a client certificate (DER), shown in hex.
#[derive(Clone, PartialEq, Eq)]
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
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
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
    /// The acting professional, as stored when the call began.
    pub professional: Professional,
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

/// Identifies callers: the allowed organisations and the directory.
#[derive(Clone)]
pub struct Authenticator {
    /// The organisations allowed by configuration, by OIN.
    organisations: Arc<HashMap<Oin, Organisation>>,
    /// Where professionals are looked up.
    directory: Directory,
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
        }
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
        let certificate = Fingerprint::of(leaf.as_ref());
        let audit = CallAudit::of(request);
        let span = tracing::Span::current();
        span.record("cert", tracing::field::display(&certificate));
        let organisation = oin_of(leaf.as_ref()).inspect_err(|_| audit.peer(None, &certificate))?;
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

/// Reads the OIN from a certificate's subject serialNumber.
pub(crate) fn oin_of(der: &[u8]) -> ServiceResult<Oin> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|_| {
        ServiceError::Unauthenticated("the client certificate cannot be parsed".into())
    })?;
    // The handshake checked validity when the connection was made; an HTTP/2
    // connection can outlive the certificate, so check again on every call.
    if !cert.validity().is_valid() {
        return Err(ServiceError::Unauthenticated(
            "the client certificate is not valid at this time (expired or not yet valid)".into(),
        ));
    }
    let no_oin = || {
        ServiceError::Unauthenticated(
            "the client certificate carries no OIN (20 digits) in its subject serialNumber".into(),
        )
    };
    let attribute = cert
        .subject()
        .iter_attributes()
        .find(|attr| attr.attr_type().to_id_string() == SERIAL_NUMBER_OID)
        .ok_or_else(no_oin)?;
    let text = attribute.as_str().map_err(|_| no_oin())?;
    Oin::parse("subject serialNumber", text).map_err(|_| no_oin())
}
