//! The words people read, in one place, so that a Dutch translation later
//! replaces this file and nothing else. (English for now.) Names used in
//! `--json` are not here: they are stable field values, not words.

use samenop_client::{
    Availability, Expertise, Role, ViolenceType,
    consult::{ConsultChange, ConsultState, LegalGround, Outcome, SuspensionReason, Urgency},
    family::{AgeBand, MemberRole},
};

pub(crate) const NO_PROFILE: &str = "no profile chosen";
pub(crate) const HINT_NO_PROFILE: &str = "add one with `samenop profile add …` (or `samenop profile import-dev` for the demo network), \
     then choose it with `samenop profile use NAME` or --profile NAME";
pub(crate) const HINT_UNAVAILABLE: &str = "is the server running, and does the profile name the right address? See `samenop profile show`";
pub(crate) const HINT_CONFLICT: &str = "someone changed it meanwhile: look again and retry";
pub(crate) const HINT_CONSENT: &str = "record a consent that covers it with `samenop consent record …`, or open on a ground \
     without consent (--ground … --justification …)";
pub(crate) const HINT_WHO_CONSENTS: &str = "under 12 a parent or carer consents; 12 to 15 the child and a parent or carer together; 16 \
     and over the young person alone";
pub(crate) const HINT_DEVICE_IN_USE: &str =
    "another samenop of this profile is writing with its keys; wait for it, or stop it";
pub(crate) const WEB_SERVING: &str =
    "the inbox is served at the address above (for this browser session only; Ctrl-C stops it)";
pub(crate) const WEB_NO_BROWSER: &str = "cannot open a browser; open the address above yourself";
pub(crate) const WEB_LAUNCH_USED: &str = "this address was used already or is not this launch's: run `samenop inbox --web` again for a new one";
pub(crate) const WEB_FOLLOW_RETRY: &str =
    "following the device's events stopped for a moment; trying again";
/// How long a command waits for the device while another samenop holds it.
pub(crate) const DEVICE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
pub(crate) const HINT_NOT_A_MEMBER: &str = "this device is not in the consult's thread yet: the consult's owner adds it, their \
     `samenop watch` as soon as you accept, or else their next `send` or `read` in the consult; try again then";
pub(crate) const HINT_NO_POSTS: &str = "the consult takes no messages now: `samenop show` says why";

/// The expertise names the command line takes and shows.
pub(crate) const EXPERTISE_NAMES: &[&str] = &[
    "child",
    "adult",
    "child-abuse",
    "partner-violence",
    "sexual-violence",
    "honour-related-violence",
    "elder-abuse",
    "human-trafficking",
    "female-genital-mutilation",
    "high-conflict-divorce",
];

pub(crate) fn expertise_from(text: &str) -> Option<Expertise> {
    use ViolenceType as V;
    Some(match text.to_ascii_lowercase().replace('_', "-").as_str() {
        "child" => Expertise::Child,
        "adult" => Expertise::Adult,
        "child-abuse" => Expertise::Violence(V::ChildAbuse),
        "partner-violence" | "domestic-violence" => Expertise::Violence(V::PartnerViolence),
        "sexual-violence" => Expertise::Violence(V::SexualViolence),
        "honour-related-violence" => Expertise::Violence(V::HonourRelatedViolence),
        "elder-abuse" => Expertise::Violence(V::ElderAbuse),
        "human-trafficking" => Expertise::Violence(V::HumanTrafficking),
        "female-genital-mutilation" => Expertise::Violence(V::FemaleGenitalMutilation),
        "high-conflict-divorce" => Expertise::Violence(V::HighConflictDivorce),
        _ => return None,
    })
}

/// An expertise as the command line names it (also its `--json` name).
pub(crate) fn expertise(e: Expertise) -> &'static str {
    use ViolenceType as V;
    match e {
        Expertise::Child => "child",
        Expertise::Adult => "adult",
        Expertise::Violence(V::ChildAbuse) => "child-abuse",
        Expertise::Violence(V::PartnerViolence) => "partner-violence",
        Expertise::Violence(V::SexualViolence) => "sexual-violence",
        Expertise::Violence(V::HonourRelatedViolence) => "honour-related-violence",
        Expertise::Violence(V::ElderAbuse) => "elder-abuse",
        Expertise::Violence(V::HumanTrafficking) => "human-trafficking",
        Expertise::Violence(V::FemaleGenitalMutilation) => "female-genital-mutilation",
        Expertise::Violence(V::HighConflictDivorce) => "high-conflict-divorce",
        Expertise::Violence(_) => "violence",
    }
}

pub(crate) fn role(r: Role) -> &'static str {
    match r {
        Role::ContactPerson => "contact person",
        Role::Specialist => "specialist",
        Role::OrgAdmin => "admin",
        Role::PrivacyOfficer => "privacy officer",
    }
}

pub(crate) fn availability(a: Availability) -> &'static str {
    match a {
        Availability::Available => "available",
        Availability::Busy => "busy",
        Availability::Away => "away",
    }
}

pub(crate) fn urgency(u: Urgency) -> &'static str {
    match u {
        Urgency::Acute => "acute",
        Urgency::Soon => "soon",
        Urgency::Normal => "normal",
    }
}

pub(crate) fn outcome(o: Outcome) -> &'static str {
    match o {
        Outcome::AdviceGiven => "advice given",
        Outcome::JointApproach => "joint approach",
        Outcome::Referred => "referred",
        Outcome::Withdrawn => "withdrawn",
        Outcome::BasisEnded => "basis ended",
    }
}

/// A state in words: "suspended (consent revoked)".
pub(crate) fn state(s: ConsultState) -> String {
    match s {
        ConsultState::Requested => "requested".into(),
        ConsultState::Accepted => "accepted".into(),
        ConsultState::Declined => "declined".into(),
        ConsultState::Expired => "expired".into(),
        ConsultState::Suspended(SuspensionReason::ConsentRevoked) => {
            "suspended (consent revoked)".into()
        }
        ConsultState::Suspended(SuspensionReason::ConsentExpired) => {
            "suspended (consent expired)".into()
        }
        ConsultState::Closed(o) => format!("closed ({})", outcome(o)),
    }
}

/// A state's `--json` name.
pub(crate) fn state_name(s: ConsultState) -> &'static str {
    match s {
        ConsultState::Requested => "requested",
        ConsultState::Accepted => "accepted",
        ConsultState::Declined => "declined",
        ConsultState::Expired => "expired",
        ConsultState::Suspended(_) => "suspended",
        ConsultState::Closed(_) => "closed",
    }
}

pub(crate) fn ground(g: LegalGround) -> &'static str {
    match g {
        LegalGround::Consent(_) => "consent",
        LegalGround::VeiligThuisReport => "Veilig Thuis report",
        LegalGround::ChildProtectionBoardRequest => "child protection board request",
        LegalGround::SupervisionOrder => "supervision order",
        LegalGround::ConflictOfDuties => "conflict of duties",
    }
}

pub(crate) fn member_role(r: MemberRole) -> &'static str {
    match r {
        MemberRole::ParentOrCarer => "parent or carer",
        MemberRole::Child => "child",
        MemberRole::Other => "other",
    }
}

pub(crate) fn age_band(a: AgeBand) -> &'static str {
    match a {
        AgeBand::Under12 => "under 12",
        AgeBand::From12To15 => "12 to 15",
        AgeBand::From16 => "16 and over",
    }
}

/// What a consult event says happened, as a person says it.
pub(crate) fn change(c: ConsultChange) -> &'static str {
    match c {
        ConsultChange::Requested => "new request",
        ConsultChange::Accepted => "accepted",
        ConsultChange::Taken => "taken by a colleague",
        ConsultChange::Declined => "declined",
        ConsultChange::Expired => "expired unanswered",
        ConsultChange::Invited => "specialist invited",
        ConsultChange::ParticipantLeft => "a participant left",
        ConsultChange::ParticipantRemoved => "a participant was removed",
        ConsultChange::Suspended => "suspended",
        ConsultChange::LegalBasisChanged => "legal basis changed",
        ConsultChange::OwnerChanged => "handed over to a new contact person",
        ConsultChange::Closed => "closed",
        _ => "changed",
    }
}

/// Said while the server cannot be reached and a safe command tries again.
pub(crate) fn trying_again(wait: std::time::Duration) -> String {
    format!(
        "the server cannot be reached; trying again in {} ms",
        wait.as_millis()
    )
}

/// Said when a message an earlier send left unconfirmed was delivered
/// before this one.
pub(crate) fn earlier_delivered(sequence: u64) -> String {
    format!("an earlier message whose sending was not confirmed went first, as message #{sequence}")
}

/// Said when the connection to the server cannot be made.
pub(crate) fn cannot_reach(server: &str, why: &str) -> String {
    format!("cannot reach the server at {server} ({why})")
}
