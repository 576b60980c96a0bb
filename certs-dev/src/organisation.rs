//! The organisations of a PKI: the demo network, and the checks on any list of them.

use crate::Error;

/// One organisation of the demo network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Organisation {
    /// A short name for file names and configuration: lowercase ASCII letters, digits and `-`.
    pub slug: &'static str,
    /// The organisation's name, the certificate subject's O (organisationName).
    pub name: &'static str,
    /// The 20-digit organisation identification number, the subject's serialNumber.
    pub oin: &'static str,
    /// What kind of organisation it is: `wijkteam`, `veilig-thuis`, `jeugdbescherming`
    /// (a certified institution), `ggz` (adult mental health) or `expertisecentrum`.
    pub kind: &'static str,
}

/// The demo network's organisations. Names and OINs are made up: every OIN has the
/// pattern `0000009900000000` followed by four digits, which no real organisation has.
///
/// The first one (a wijkteam) also owns the expired, revoked and untrusted test certificates.
pub const DEMO_ORGANISATIONS: &[Organisation] = &[
    Organisation {
        slug: "wijkteam-demostad-oost",
        name: "Wijkteam Demostad-Oost",
        oin: "00000099000000000001",
        kind: "wijkteam",
    },
    Organisation {
        slug: "veilig-thuis-demoregio",
        name: "Veilig Thuis Demoregio",
        oin: "00000099000000000002",
        kind: "veilig-thuis",
    },
    Organisation {
        slug: "jeugdbescherming-demoregio",
        name: "Jeugdbescherming Demoregio",
        oin: "00000099000000000003",
        kind: "jeugdbescherming",
    },
    Organisation {
        slug: "ggz-demoregio",
        name: "GGZ Demoregio",
        oin: "00000099000000000004",
        kind: "ggz",
    },
    Organisation {
        slug: "expertisecentrum-geweld-demoregio",
        name: "Expertisecentrum Geweld Demoregio",
        oin: "00000099000000000005",
        kind: "expertisecentrum",
    },
    Organisation {
        slug: "wijkteam-demostad-west",
        name: "Wijkteam Demostad-West",
        oin: "00000099000000000006",
        kind: "wijkteam",
    },
];

/// Checks that the organisations can be written and told apart; returns the first one.
pub(crate) fn validate(organisations: &[Organisation]) -> Result<&Organisation, Error> {
    let invalid = |org: &Organisation, reason| Error::InvalidOrganisation {
        slug: org.slug.to_owned(),
        reason,
    };
    for (index, org) in organisations.iter().enumerate() {
        let slug_ok = !org.slug.is_empty()
            && !org.slug.starts_with('-')
            && org
                .slug
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !slug_ok {
            return Err(invalid(
                org,
                "the slug must be lowercase ASCII letters, digits and '-'",
            ));
        }
        if org.oin.len() != 20 || !org.oin.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(org, "the OIN must be 20 ASCII digits"));
        }
        let earlier = &organisations[..index];
        if earlier.iter().any(|other| other.slug == org.slug) {
            return Err(invalid(org, "the slug is not unique"));
        }
        if earlier.iter().any(|other| other.oin == org.oin) {
            return Err(invalid(org, "the OIN is not unique"));
        }
    }
    organisations.first().ok_or(Error::NoOrganisations)
}
