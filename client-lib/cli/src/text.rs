//! The words people read, in one place, so that a Dutch translation later
//! replaces this file and nothing else. (English for now.) Names used in
//! `--json` are not here: they are stable field values, not words.

use samenop_client::{
    Availability, Expertise, Role, ViolenceType,
    consult::{
        ConsultChange, ConsultState, DeclineReason, LegalGround, Outcome, ParticipantStatus,
        SuspensionReason, Urgency,
    },
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
pub(crate) const WEB_THREAD_LAGS: &str =
    "a thread is not in line yet; it is caught up when its consult is next shown";
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

/// Where a suspended consult's `--json` and the web inbox say why.
pub(crate) fn suspension_name(r: SuspensionReason) -> &'static str {
    match r {
        SuspensionReason::ConsentRevoked => "consent-revoked",
        SuspensionReason::ConsentExpired => "consent-expired",
    }
}

/// A decline reason as the command line and the web inbox name it.
pub(crate) fn decline_name(r: DeclineReason) -> &'static str {
    match r {
        DeclineReason::NoCapacity => "no-capacity",
        DeclineReason::OutsideExpertise => "outside-expertise",
        DeclineReason::ConflictOfInterest => "conflict-of-interest",
        DeclineReason::Other => "other",
    }
}

/// The decline reason named `name`.
pub(crate) fn decline_from(name: &str) -> Option<DeclineReason> {
    DECLINE_REASONS
        .into_iter()
        .find(|r| decline_name(*r) == name)
}

/// An outcome's `--json` and web inbox name: "advice-given".
pub(crate) fn outcome_name(o: Outcome) -> String {
    outcome(o).replace(' ', "-")
}

/// The outcome named `name`.
pub(crate) fn outcome_from(name: &str) -> Option<Outcome> {
    OUTCOMES.into_iter().find(|o| outcome_name(*o) == name)
}

const URGENCIES: [Urgency; 3] = [Urgency::Acute, Urgency::Soon, Urgency::Normal];
const OUTCOMES: [Outcome; 5] = [
    Outcome::AdviceGiven,
    Outcome::JointApproach,
    Outcome::Referred,
    Outcome::Withdrawn,
    Outcome::BasisEnded,
];
const DECLINE_REASONS: [DeclineReason; 4] = [
    DeclineReason::NoCapacity,
    DeclineReason::OutsideExpertise,
    DeclineReason::ConflictOfInterest,
    DeclineReason::Other,
];
const STATES: [ConsultState; 6] = [
    ConsultState::Requested,
    ConsultState::Accepted,
    ConsultState::Declined,
    ConsultState::Expired,
    ConsultState::Suspended(SuspensionReason::ConsentRevoked),
    ConsultState::Closed(Outcome::AdviceGiven),
];
const GROUNDS: [LegalGround; 5] = [
    LegalGround::Consent(uuid::Uuid::nil()),
    LegalGround::VeiligThuisReport,
    LegalGround::ChildProtectionBoardRequest,
    LegalGround::SupervisionOrder,
    LegalGround::ConflictOfDuties,
];
const STATUSES: [ParticipantStatus; 6] = [
    ParticipantStatus::Invited,
    ParticipantStatus::Active,
    ParticipantStatus::Declined,
    ParticipantStatus::Left,
    ParticipantStatus::Removed,
    ParticipantStatus::HandedOver,
];

/// A participant's standing as `--json` names it.
pub(crate) fn status_name(s: ParticipantStatus) -> String {
    format!("{s:?}").to_ascii_lowercase()
}

/// A legal ground's `--json` name: "veilig_thuis_report".
pub(crate) fn ground_name(g: LegalGround) -> String {
    ground(g).replace(' ', "_").to_ascii_lowercase()
}

/// The Dutch of the consult vocabulary the web inbox shows; the English
/// is the command line's own (above).
mod dutch {
    use super::{
        Availability, ConsultState, DeclineReason, Expertise, LegalGround, Outcome,
        ParticipantStatus, SuspensionReason, Urgency, ViolenceType as V,
    };

    pub(super) fn expertise(e: Expertise) -> &'static str {
        match e {
            Expertise::Child => "kind",
            Expertise::Adult => "volwassene",
            Expertise::Violence(V::ChildAbuse) => "kindermishandeling",
            Expertise::Violence(V::PartnerViolence) => "partnergeweld",
            Expertise::Violence(V::SexualViolence) => "seksueel geweld",
            Expertise::Violence(V::HonourRelatedViolence) => "eergerelateerd geweld",
            Expertise::Violence(V::ElderAbuse) => "ouderenmishandeling",
            Expertise::Violence(V::HumanTrafficking) => "mensenhandel",
            Expertise::Violence(V::FemaleGenitalMutilation) => "vrouwelijke genitale verminking",
            Expertise::Violence(V::HighConflictDivorce) => "complexe scheiding",
            Expertise::Violence(_) => "geweld",
        }
    }

    pub(super) fn urgency(u: Urgency) -> &'static str {
        match u {
            Urgency::Acute => "acuut",
            Urgency::Soon => "spoedig",
            Urgency::Normal => "normaal",
        }
    }

    pub(super) fn state(s: ConsultState) -> &'static str {
        match s {
            ConsultState::Requested => "aangevraagd",
            ConsultState::Accepted => "lopend",
            ConsultState::Declined => "afgewezen",
            ConsultState::Expired => "verlopen",
            ConsultState::Suspended(_) => "opgeschort",
            ConsultState::Closed(_) => "afgesloten",
        }
    }

    pub(super) fn suspension(r: SuspensionReason) -> &'static str {
        match r {
            SuspensionReason::ConsentRevoked => "toestemming ingetrokken",
            SuspensionReason::ConsentExpired => "toestemming verlopen",
        }
    }

    pub(super) fn outcome(o: Outcome) -> &'static str {
        match o {
            Outcome::AdviceGiven => "advies gegeven",
            Outcome::JointApproach => "samen verder",
            Outcome::Referred => "doorverwezen of gemeld",
            Outcome::Withdrawn => "ingetrokken",
            Outcome::BasisEnded => "grondslag vervallen",
        }
    }

    pub(super) fn decline(r: DeclineReason) -> &'static str {
        match r {
            DeclineReason::NoCapacity => "geen capaciteit op tijd",
            DeclineReason::OutsideExpertise => "buiten mijn expertise",
            DeclineReason::ConflictOfInterest => "belangenconflict",
            DeclineReason::Other => "andere reden (toelichting nodig)",
        }
    }

    pub(super) fn ground(g: LegalGround) -> &'static str {
        match g {
            LegalGround::Consent(_) => "toestemming",
            LegalGround::VeiligThuisReport => "melding of advies Veilig Thuis",
            LegalGround::ChildProtectionBoardRequest => {
                "verzoek van de Raad voor de Kinderbescherming"
            }
            LegalGround::SupervisionOrder => "ondertoezichtstelling",
            LegalGround::ConflictOfDuties => "conflict van plichten",
        }
    }

    pub(super) fn availability(a: Availability) -> &'static str {
        match a {
            Availability::Available => "beschikbaar",
            Availability::Busy => "bezig",
            Availability::Away => "afwezig",
        }
    }

    pub(super) fn status(s: ParticipantStatus) -> &'static str {
        match s {
            ParticipantStatus::Invited => "uitgenodigd",
            ParticipantStatus::Active => "neemt deel",
            ParticipantStatus::Declined => "afgewezen",
            ParticipantStatus::Left => "vertrokken",
            ParticipantStatus::Removed => "verwijderd",
            ParticipantStatus::HandedOver => "overgedragen",
        }
    }
}

/// English words the command line has no sentence for but the web inbox
/// shows.
fn decline_words(r: DeclineReason) -> &'static str {
    match r {
        DeclineReason::NoCapacity => "no capacity in time",
        DeclineReason::OutsideExpertise => "outside my expertise",
        DeclineReason::ConflictOfInterest => "conflict of interest",
        DeclineReason::Other => "another reason (a note is needed)",
    }
}

fn status_words(s: ParticipantStatus) -> &'static str {
    match s {
        ParticipantStatus::Invited => "invited",
        ParticipantStatus::Active => "takes part",
        ParticipantStatus::Declined => "declined",
        ParticipantStatus::Left => "left",
        ParticipantStatus::Removed => "removed",
        ParticipantStatus::HandedOver => "handed over",
    }
}

/// The consult vocabulary of the web inbox, by language and kind, keyed by
/// the `--json` names: English as the command line says it, and Dutch.
/// The page's own sentences are in its `strings.js`.
pub(crate) fn vocabulary() -> serde_json::Value {
    use serde_json::{Map, Value, json};
    fn table<T: Copy, K: Into<String>>(
        all: impl IntoIterator<Item = T>,
        key: impl Fn(T) -> K,
        word: impl Fn(T) -> String,
    ) -> Value {
        Value::Object(
            all.into_iter()
                .map(|v| (key(v).into(), Value::String(word(v))))
                .collect::<Map<_, _>>(),
        )
    }
    let expertise: Vec<Expertise> = EXPERTISE_NAMES
        .iter()
        .filter_map(|n| expertise_from(n))
        .collect();
    let suspensions = [
        SuspensionReason::ConsentRevoked,
        SuspensionReason::ConsentExpired,
    ];
    let availabilities = [
        Availability::Available,
        Availability::Busy,
        Availability::Away,
    ];
    json!({
        "en": {
            "expertise": table(expertise.iter().copied(), self::expertise, |e| self::expertise(e).replace('-', " ")),
            "urgency": table(URGENCIES, self::urgency, |u| self::urgency(u).into()),
            "states": table(STATES, state_name, |s| state_name(s).into()),
            "suspensions": table(suspensions, suspension_name, |r| suspension_name(r).replace('-', " ")),
            "outcomes": table(OUTCOMES, outcome_name, |o| self::outcome(o).into()),
            "reasons": table(DECLINE_REASONS, decline_name, |r| decline_words(r).into()),
            "grounds": table(GROUNDS, ground_name, |g| self::ground(g).into()),
            "availability": table(availabilities, self::availability, |a| self::availability(a).into()),
            "statuses": table(STATUSES, status_name, |s| status_words(s).into()),
        },
        "nl": {
            "expertise": table(expertise.iter().copied(), self::expertise, |e| dutch::expertise(e).into()),
            "urgency": table(URGENCIES, self::urgency, |u| dutch::urgency(u).into()),
            "states": table(STATES, state_name, |s| dutch::state(s).into()),
            "suspensions": table(suspensions, suspension_name, |r| dutch::suspension(r).into()),
            "outcomes": table(OUTCOMES, outcome_name, |o| dutch::outcome(o).into()),
            "reasons": table(DECLINE_REASONS, decline_name, |r| dutch::decline(r).into()),
            "grounds": table(GROUNDS, ground_name, |g| dutch::ground(g).into()),
            "availability": table(availabilities, self::availability, |a| dutch::availability(a).into()),
            "statuses": table(STATUSES, status_name, |s| dutch::status(s).into()),
        },
    })
}
