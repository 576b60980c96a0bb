//! The command line, as clap reads it: every command with its help and an
//! example. Completions and the man page are made from these definitions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The exit codes, shown at the end of `samenop --help`.
/// Exit codes, ids and the error object: shown under `-h` and `--help`.
macro_rules! exit_codes {
    () => {
        "\
Exit codes:
  0  success
  1  failure: a server error, a message that failed verification, broken local state
  2  usage: the command line is wrong
  3  not found: the consult, family or professional does not exist for you
  4  not allowed: you may not do this, or the server does not know who you are
  5  precondition: the state does not allow it (no consent, the consult has ended)
  6  conflict: someone else was first, or it changed meanwhile; read again
  7  unavailable: the server cannot be reached
  8  invalid input: the server refused the input as malformed or too large
  9  configuration: the profile or its files are missing or unusable

Ids: a consult, family or attachment can be given by a unique prefix of at least 6 characters.
With --json every command prints one JSON document (JSON lines for `watch`), and a failure one
JSON object {\"error\": {\"class\", \"message\", \"hint\", \"exit_code\"}} on stderr."
    };
}

const EXIT_CODES: &str = exit_codes!();

/// Under `--help` (and in the manual page): the exit codes, and the JSON
/// field names, which are stable: new fields may come, none is renamed or
/// removed. They are made in `cmd/json.rs`; the tests check every field a
/// command prints is named here.
const LONG_HELP: &str = concat!(
    exit_codes!(),
    "

A dropped connection is tried again for about four seconds where that is safe: reads, and
`send`, whose message goes under one request id so it is stored once. Others say unavailable.

JSON documents (--json), by command:
  inbox                {requests: [consult]}
  consults             {consults: [consult]}
  show, accept, open, invite, remove, basis, close
                       consult
  decline              {consult_id, declined, consult}
  leave                {consult_id, left}
  read                 {consult_id, messages: [message]}
  send                 {consult_id, sequence}
  download             {attachment_id, path, size}
  watch (JSON lines)   {cursor, kind: consult, event: {consult_id, change, state, actor_id,
                        consult}} | {cursor, kind: welcome, consult_id}
                       | {cursor, kind: message, message}
  whoami               professional and {profile, devices}
  specialists          {specialists: [professional]}
  device list          {devices: [{id, label, registered_at, revoked_at}]}
  family register, show
                       family
  family handover      {family, moved_consult_ids}
  family export        {family, consents: [consent], consults: [consult], threads:
                        [{consult_id, messages, attachments}]}
  family erase         {family_id, consents_erased, consults_erased, audit_event_id}
  consent record       consent
  consent revoke       {consent, suspended_consult_ids}
  consent list         {consents: [consent]}
  audit query          {events: [{sequence, id, action, occurred_at, outcome, status, reason,
                        professional_id, organisation_oin, by_server, objects: [{kind, id}],
                        detail}]}
  audit export         the server's export as it is: JSON lines (its checkpoint on stderr)
  audit verify         {ok, events_checked, last_sequence, checkpoints_checked, first_broken,
                        fault, detail}
  report               {from, to, rows: [{expertise, urgency, consults, accepted,
                        accepted_in_time, accepted_in_time_share, median_time_to_accept_seconds,
                        p90_time_to_accept_seconds, answered, expired}]}
  demo                 {family_id, consult_id, steps: [{step, says, then, refused}]}

consult: id, state, state_text, suspension, outcome, question, expertise, urgency, family_id,
  concerned_member_ids, owner_id, addressed_specialist_id, legal_basis {ground, consent_id},
  justification, flagged_for_review, respond_by, accepted_at, first_answer_at, closed_at,
  participants: [{professional_id, organisation_oin, owner, status}]
message: consult_id, sequence, sender_professional_id, sender_device_id, own, posted_at,
  reply_to, text, attachments: [{id, name, media_type, size}]
family: id, members: [{number, id, role, age_band}], contact_person_id, contact_person_oin
consent: id, family_id, status, concerned_member_ids, given_by_member_ids, expertise,
  organisation_oins, valid_from, valid_until
professional: id, name, organisation_oin, organisation_name, roles, expertise, availability,
  active
Times are RFC 3339 in UTC; ids are whole UUIDs; absent values are null."
);

/// samenop: consult specialists together, end-to-end encrypted.
#[derive(Debug, Parser)]
#[command(
    name = "samenop",
    version,
    about,
    after_help = EXIT_CODES,
    after_long_help = LONG_HELP
)]
pub(crate) struct Cli {
    /// The profile file (default: config.toml in the platform's config directory, under samenop/).
    #[arg(long, global = true, env = "SAMENOP_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// The profile to act as (default: the current one, see `samenop profile use`).
    #[arg(
        long,
        short = 'p',
        global = true,
        env = "SAMENOP_PROFILE",
        value_name = "NAME"
    )]
    pub(crate) profile: Option<String>,
    /// Print JSON for scripts instead of text for people.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Clone, Subcommand)]
pub(crate) enum Command {
    /// Manage profiles: one per professional you act as.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Who this profile acts as.
    #[command(after_help = "Example:\n  samenop whoami")]
    Whoami,
    /// Find specialists by expertise.
    #[command(
        after_help = "Example:\n  samenop specialists --expertise partner-violence --available"
    )]
    Specialists {
        /// Only this expertise: child, adult, or a violence type (partner-violence, child-abuse, …).
        #[arg(long, value_parser = parse_expertise)]
        expertise: Option<samenop_client::Expertise>,
        /// Only those available for new requests now.
        #[arg(long)]
        available: bool,
    },
    /// This machine's device for the profile (its encryption keys).
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Consult requests for you and your expertise pools, most urgent first;
    /// with --web, your inbox in the browser.
    #[command(after_help = "Examples:\n  samenop inbox\n  samenop inbox --open")]
    Inbox {
        /// Serve the inbox as a web page on 127.0.0.1 for this machine's
        /// browser (the address printed holds a one-time token); this
        /// process holds the device's keys until Ctrl-C.
        #[arg(long)]
        web: bool,
        /// Serve it (as --web) and open the browser at it.
        #[arg(long)]
        open: bool,
    },
    /// Your consults: those you own and those you take part in.
    #[command(after_help = "Example:\n  samenop consults --state accepted")]
    Consults {
        /// Only those in this state.
        #[arg(long, value_enum)]
        state: Option<StateFilter>,
    },
    /// A consult: its question, state, participants and basis.
    #[command(after_help = "Example:\n  samenop show 0193a5b0")]
    Show {
        /// The consult (a prefix of at least 6 characters will do).
        consult: String,
    },
    /// A consult's thread, decrypted: who wrote what, when.
    #[command(after_help = "Example:\n  samenop read 0193a5b0")]
    Read {
        /// The consult.
        consult: String,
    },
    /// Write in a consult's thread: a text, a file, or both.
    #[command(
        after_help = "Examples:\n  samenop send 0193a5b0 \"Ik bel de school morgen.\"\n  samenop send 0193a5b0 \"Het verslag\" --file verslag.pdf"
    )]
    Send {
        /// The consult.
        consult: String,
        /// The message.
        text: Option<String>,
        /// A file to attach (encrypted with a key of its own).
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Save an attachment of a consult's thread, decrypted.
    #[command(after_help = "Example:\n  samenop download 0193a5b0 01a2b3c4 --out verslag.pdf")]
    Download {
        /// The consult.
        consult: String,
        /// The attachment (as `samenop read` lists it).
        attachment: String,
        /// Where to save it (default: its name, in this directory).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Follow what happens, live: requests, accepts, messages, suspensions.
    #[command(
        after_help = "Example:\n  samenop watch\n\nResumes where it stopped (the cursor is kept with the profile) after a dropped connection\nor a server restart, without missing or repeating an event. With --json: one JSON object per line."
    )]
    Watch {
        /// Start after this cursor instead of where the last watch stopped.
        #[arg(long, value_name = "CURSOR")]
        from: Option<String>,
    },
    /// Stop taking part in a consult.
    #[command(after_help = "Example:\n  samenop leave 0193a5b0")]
    Leave {
        /// The consult.
        consult: String,
    },
    /// Accept a consult request (specialists).
    #[command(after_help = "Example:\n  samenop accept 0193a5b0")]
    Accept {
        /// The consult.
        consult: String,
    },
    /// Decline a consult request (specialists).
    #[command(after_help = "Example:\n  samenop decline 0193a5b0 --reason no-capacity")]
    Decline {
        /// The consult.
        consult: String,
        /// Why.
        #[arg(long, value_enum)]
        reason: DeclineArg,
        /// A note (needed for --reason other).
        #[arg(long)]
        note: Option<String>,
    },
    /// Whether you take new requests (specialists).
    #[command(after_help = "Example:\n  samenop availability away")]
    Availability {
        /// available, busy (named requests only) or away.
        #[arg(value_enum)]
        value: AvailabilityArg,
    },
    /// Families you are the contact person of (contact persons).
    #[command(subcommand)]
    Family(FamilyCommand),
    /// A family's consent (contact persons).
    #[command(subcommand)]
    Consent(ConsentCommand),
    /// Open a consult: to a specialist or a pool, about a family or anonymous.
    #[command(
        after_help = "Examples:\n  samenop open --family 01a2b3c4 --concerned 2 --consent 7e57c0de --expertise partner-violence \\\n    --question \"Hoe schatten jullie de veiligheid in?\" --urgency soon\n  samenop open --anonymous --expertise child --question \"Wat is normaal bij een peuter?\""
    )]
    Open(OpenArgs),
    /// Invite another specialist to a consult (its owner).
    #[command(after_help = "Example:\n  samenop invite 0193a5b0 <specialist id> --expertise child")]
    Invite {
        /// The consult.
        consult: String,
        /// The specialist (an id from `samenop specialists`).
        specialist: uuid::Uuid,
        /// The expertise they are invited for.
        #[arg(long, value_parser = parse_expertise)]
        expertise: samenop_client::Expertise,
    },
    /// Remove a specialist from a consult (its owner).
    #[command(after_help = "Example:\n  samenop remove 0193a5b0 <specialist id>")]
    Remove {
        /// The consult.
        consult: String,
        /// The specialist.
        professional: uuid::Uuid,
    },
    /// Change a consult's legal basis (its owner).
    #[command(after_help = "Example:\n  samenop basis 0193a5b0 --consent 7e57c0de")]
    Basis {
        /// The consult.
        consult: String,
        #[command(flatten)]
        basis: BasisArgs,
    },
    /// Close a consult with its outcome (its owner).
    #[command(after_help = "Example:\n  samenop close 0193a5b0 --outcome advice-given")]
    Close {
        /// The consult.
        consult: String,
        /// How it ended.
        #[arg(long, value_enum)]
        outcome: OutcomeArg,
    },
    /// Response times of the network's consults over a period.
    #[command(after_help = "Example:\n  samenop report --from 2026-11-01 --to 2026-12-01")]
    Report {
        /// The period's start (YYYY-MM-DD; default 30 days ago).
        #[arg(long)]
        from: Option<String>,
        /// Its end (default now).
        #[arg(long)]
        to: Option<String>,
    },
    /// The audit trail (privacy officers, and contact persons for their families).
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Shell completions, printed for your shell.
    #[command(
        after_help = "Example:\n  samenop completions bash > ~/.local/share/bash-completion/completions/samenop"
    )]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// The manual page, printed in roff.
    #[command(after_help = "Example:\n  samenop man > samenop.1 && man ./samenop.1")]
    Man,
    /// The story of samenop, played against a running `samenop-server dev`.
    #[command(after_help = "Example:\n  samenop demo")]
    Demo {
        /// The dev server.
        #[arg(long, default_value = "https://localhost:7443")]
        server: String,
        /// Its development PKI (with its demo-network.json).
        #[arg(long, default_value = "certs-dev/generated")]
        pki: PathBuf,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub(crate) enum ProfileCommand {
    /// Every profile; the current one marked.
    #[command(after_help = "Example:\n  samenop profile list")]
    List,
    /// One profile's settings.
    #[command(after_help = "Example:\n  samenop profile show veilig-thuis/jeroen")]
    Show {
        /// The profile (default: the current one).
        name: Option<String>,
    },
    /// Make a profile the current one.
    #[command(after_help = "Example:\n  samenop profile use wijkteam-oost/sanne")]
    Use {
        /// The profile.
        name: String,
    },
    /// Add a profile.
    #[command(
        after_help = "Example:\n  samenop profile add wijkteam/sanne --server https://samenop.example.nl:7443 \\\n    --ca ca.pem --cert wijkteam.pem --key wijkteam.key --professional <id>"
    )]
    Add {
        /// Its name.
        name: String,
        /// The server.
        #[arg(long)]
        server: String,
        /// The name on the server's certificate, when not the server's host.
        #[arg(long)]
        server_name: Option<String>,
        /// The CA certificate (PEM).
        #[arg(long)]
        ca: PathBuf,
        /// The organisation's certificate (PEM).
        #[arg(long)]
        cert: PathBuf,
        /// Its private key (PEM).
        #[arg(long)]
        key: PathBuf,
        /// The professional's id.
        #[arg(long)]
        professional: uuid::Uuid,
        /// The device's state directory (default: under the platform's data directory).
        #[arg(long)]
        state: Option<PathBuf>,
    },
    /// Remove a profile (its device's state stays on disk).
    #[command(after_help = "Example:\n  samenop profile remove wijkteam/sanne")]
    Remove {
        /// The profile.
        name: String,
    },
    /// One profile for every professional of a running `samenop-server dev`.
    #[command(after_help = "Example:\n  samenop profile import-dev --pki certs-dev/generated")]
    ImportDev {
        /// The development PKI (with its demo-network.json).
        #[arg(long, default_value = "certs-dev/generated")]
        pki: PathBuf,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub(crate) enum DeviceCommand {
    /// Register this machine's device (done on first use otherwise).
    #[command(after_help = "Example:\n  samenop device register --label \"laptop Jeroen\"")]
    Register {
        /// How the device is shown to others.
        #[arg(long, default_value = "samenop command line")]
        label: String,
    },
    /// Your devices, as the directory lists them.
    #[command(after_help = "Example:\n  samenop device list")]
    List,
    /// Revoke a device (a lost laptop): it can read nothing more.
    #[command(after_help = "Example:\n  samenop device revoke <device id>")]
    Revoke {
        /// The device.
        device: uuid::Uuid,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub(crate) enum FamilyCommand {
    /// Register a family: its members by role and age band.
    #[command(
        after_help = "Example:\n  samenop family register --member parent:16+ --member child:12-15 --member child:under-12\n\nRoles: parent, child, other. Age bands: under-12, 12-15, 16+ (or a birth month: 2015-04)."
    )]
    Register {
        /// A member: ROLE:AGE.
        #[arg(long = "member", required = true, value_name = "ROLE:AGE")]
        members: Vec<String>,
    },
    /// A family and its members (numbered, for --concerned and --given-by).
    #[command(after_help = "Example:\n  samenop family show 01a2b3c4")]
    Show {
        /// The family.
        family: String,
    },
    /// Hand a family over to another contact person, consults and all.
    #[command(after_help = "Example:\n  samenop family handover 01a2b3c4 --to <contact person id>")]
    Handover {
        /// The family.
        family: String,
        /// The new contact person.
        #[arg(long)]
        to: uuid::Uuid,
    },
    /// Everything the server holds about a family (privacy officers, contact persons).
    #[command(after_help = "Example:\n  samenop family export 01a2b3c4 > gezin.json")]
    Export {
        /// The family.
        family: String,
    },
    /// Erase a family, leaving only the audit trail (its contact person).
    #[command(
        after_help = "Example:\n  samenop family erase 01a2b3c4 --reason data-subject-request --evidence AVG-2026-12 --confirm <full family id>"
    )]
    Erase {
        /// The family.
        family: String,
        /// Why.
        #[arg(long, value_enum)]
        reason: ErasureArg,
        /// Where the request is on record.
        #[arg(long)]
        evidence: String,
        /// The family's whole id again, as confirmation.
        #[arg(long)]
        confirm: uuid::Uuid,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub(crate) enum ConsentCommand {
    /// Record a consent given by the family.
    #[command(
        after_help = "Example:\n  samenop consent record 01a2b3c4 --concerned 1 --concerned 2 --given-by 1 --given-by 2 \\\n    --expertise partner-violence --until 90d --evidence \"gesprek 1 dec\"\n\nMembers by their number in `samenop family show`. Who must consent follows each concerned\nmember's age: under 12 a parent or carer, 12 to 15 the child and a parent or carer, 16 and over\nthe member alone."
    )]
    Record {
        /// The family.
        family: String,
        /// Whose information it covers (member numbers or ids).
        #[arg(long, required = true)]
        concerned: Vec<String>,
        /// Who gave it (member numbers or ids).
        #[arg(long = "given-by", required = true)]
        given_by: Vec<String>,
        /// The expertise it covers.
        #[arg(long, required = true, value_parser = parse_expertise)]
        expertise: Vec<samenop_client::Expertise>,
        /// Only these organisations (OINs; default: any).
        #[arg(long = "org")]
        organisations: Vec<String>,
        /// Until when (YYYY-MM-DD or a span: 90d).
        #[arg(long, default_value = "90d")]
        until: String,
        /// Where the consent is on record (a file reference).
        #[arg(long)]
        evidence: String,
    },
    /// Revoke a consent: the consults resting on it are suspended at once.
    #[command(
        after_help = "Example:\n  samenop consent revoke 7e57c0de --family 01a2b3c4 --reason withdrawn"
    )]
    Revoke {
        /// The consent.
        consent: String,
        /// Its family (to find the consent by a prefix).
        #[arg(long)]
        family: String,
        /// Why.
        #[arg(long, value_enum, default_value = "withdrawn")]
        reason: RevocationArg,
        /// Where the revocation is on record.
        #[arg(long)]
        evidence: Option<String>,
    },
    /// A family's consents.
    #[command(after_help = "Example:\n  samenop consent list 01a2b3c4 --all")]
    List {
        /// The family.
        family: String,
        /// Revoked and expired ones too.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub(crate) enum AuditCommand {
    /// Events of your share of the trail.
    #[command(after_help = "Example:\n  samenop audit query --family 01a2b3c4")]
    Query(AuditFilterArgs),
    /// Check the whole trail's hash chain and signed checkpoints (privacy officers).
    #[command(after_help = "Example:\n  samenop audit verify")]
    Verify,
    /// Your share of the trail as JSON lines, then the newest checkpoint.
    #[command(after_help = "Example:\n  samenop audit export --family 01a2b3c4 > trail.jsonl")]
    Export(AuditFilterArgs),
}

#[derive(Debug, Clone, Args)]
pub(crate) struct AuditFilterArgs {
    /// Only events about this family.
    #[arg(long)]
    pub(crate) family: Option<String>,
    /// Only events about this consult.
    #[arg(long)]
    pub(crate) consult: Option<String>,
    /// Only events by or about this professional.
    #[arg(long)]
    pub(crate) professional: Option<uuid::Uuid>,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct OpenArgs {
    /// The family the question is about.
    #[arg(
        long,
        conflicts_with = "anonymous",
        required_unless_present = "anonymous"
    )]
    pub(crate) family: Option<String>,
    /// Members the question is about (numbers or ids).
    #[arg(long)]
    pub(crate) concerned: Vec<String>,
    /// No family: a question that needs no consent.
    #[arg(long)]
    pub(crate) anonymous: bool,
    #[command(flatten)]
    pub(crate) basis: BasisArgs,
    /// The expertise asked for.
    #[arg(long, value_parser = parse_expertise)]
    pub(crate) expertise: samenop_client::Expertise,
    /// The question, in short (what is asked goes in the thread).
    #[arg(long)]
    pub(crate) question: String,
    /// How soon.
    #[arg(long, value_enum, default_value = "normal")]
    pub(crate) urgency: UrgencyArg,
    /// A specialist by id (default: the pool of the expertise).
    #[arg(long)]
    pub(crate) to: Option<uuid::Uuid>,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct BasisArgs {
    /// The consent it rests on.
    #[arg(long, conflicts_with = "ground")]
    pub(crate) consent: Option<String>,
    /// A ground for sharing without consent.
    #[arg(long, value_enum, requires = "justification")]
    pub(crate) ground: Option<GroundArg>,
    /// Why that ground applies (20 to 2000 characters, no BSN).
    #[arg(long)]
    pub(crate) justification: Option<String>,
    /// Withhold this sharing from the family's transparency view.
    #[arg(long)]
    pub(crate) safety_sensitive: bool,
}

/// The consult states `samenop consults` can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum StateFilter {
    Requested,
    Accepted,
    Declined,
    Expired,
    Suspended,
    Closed,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum DeclineArg {
    NoCapacity,
    OutsideExpertise,
    ConflictOfInterest,
    Other,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum AvailabilityArg {
    Available,
    Busy,
    Away,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum OutcomeArg {
    AdviceGiven,
    JointApproach,
    Referred,
    Withdrawn,
    BasisEnded,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum UrgencyArg {
    Acute,
    Soon,
    Normal,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum GroundArg {
    VeiligThuisReport,
    ChildProtectionBoardRequest,
    SupervisionOrder,
    ConflictOfDuties,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ErasureArg {
    DataSubjectRequest,
    RegisteredInError,
    NoLongerNeeded,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum RevocationArg {
    Withdrawn,
    RecordedInError,
}

/// An expertise as typed: child, adult, or a violence type.
pub(crate) fn parse_expertise(text: &str) -> Result<samenop_client::Expertise, String> {
    crate::text::expertise_from(text).ok_or_else(|| {
        format!(
            "{text:?} is not an expertise; one of: {}",
            crate::text::EXPERTISE_NAMES.join(", ")
        )
    })
}
