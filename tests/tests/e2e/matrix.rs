//! Every `samenop.v1` method, from the server's own descriptor set, called
//! as every kind of wrong actor with the real ids of a family and its
//! consults (open, closed, declined) and again with ids that exist nowhere.

use std::collections::BTreeMap;

use samenop_client::{
    Client, Expertise, Role, ViolenceType,
    consult::{About, DeclineReason, LegalBasis, LegalGround, NewConsult, Outcome, Urgency},
    mls::Messenger,
};
use samenop_proto::v1;
use samenop_tests::{ORG_A, ORG_B, ThreadedConsult, thread_entries, threaded_consult, within};
use tempfile::TempDir;
use tonic::{Code, transport::Channel};
use uuid::Uuid;

use crate::raw::{self, Answer, Method, Values};

const ABUSE: Expertise = Expertise::Violence(ViolenceType::ChildAbuse);
const ORG_C: &str = "jeugdbescherming-demoregio";
const ORG_D: &str = "ggz-demoregio";
const JUSTIFICATION: &str =
    "Melding bij Veilig Thuis na herhaald huiselijk geweld; het kind is in gevaar.";

/// Calls open by design to every registered professional (ARCHITECTURE
/// decisions 7 and 14): finding specialists and their device keys, one's
/// own organisation, availability and families, the network's figures,
/// the trail's integrity for a privacy officer. They may answer, and must
/// still show nothing of the family.
const OPEN: &[&str] = &[
    "DirectoryService/GetProfessional",
    "DirectoryService/ListSpecialists",
    "DirectoryService/ListProfessionals",
    "DirectoryService/SetAvailability",
    "FamilyService/RegisterFamily",
    "ConsultService/GetConsultReport",
    "AuditService/VerifyAudit",
];

/// Calls open for the caller's own device: its own event stream.
const OPEN_FOR_OWN_DEVICE: &[&str] = &["ThreadService/Subscribe"];

/// Calls whose own-device case the matrix leaves out (the case with a
/// participant's device is still made): revoking one's own device is one's
/// right and would end the rest of the matrix for that actor, and key
/// packages for one's own device need real ones, which only a device makes.
const NOT_FOR_OWN_DEVICE: &[&str] = &[
    "DirectoryService/RevokeDevice",
    "DirectoryService/UploadKeyPackages",
];

/// One wrong actor.
struct Actor {
    /// Who they are, for the report.
    name: &'static str,
    /// Their organisation's connection.
    channel: Channel,
    /// The professional named in the metadata.
    professional: Option<Uuid>,
    /// Their own device, when they have one.
    device: Option<Uuid>,
}

/// The family of a [`ThreadedConsult`] after a handover from Sanne to Daan
/// (org A), with a closed consult on a safety-sensitive ground and a
/// declined one, and the wrong actors.
pub(crate) struct Matrix {
    pub(crate) t: ThreadedConsult,
    pub(crate) daan: Client,
    pub(crate) daan_device: Messenger,
    closed: Uuid,
    declined: Uuid,
    pub(crate) values: Values,
    actors: Vec<Actor>,
    _dirs: Vec<TempDir>,
}

async fn device(client: &Client, dirs: &mut Vec<TempDir>) -> Messenger {
    let dir = tempfile::tempdir().expect("state dir");
    let messenger = Messenger::open(client, dir.path(), "werkplek")
        .await
        .expect("device");
    dirs.push(dir);
    messenger
}

fn family_consult(t: &ThreadedConsult, basis: LegalBasis, specialist: Option<Uuid>) -> NewConsult {
    NewConsult {
        about: About::Family {
            family: t.family.id,
            concerned: vec![t.family.members[1].id],
            basis,
        },
        question: "Hoe wegen wij deze signalen?".into(),
        expertise: ABUSE,
        urgency: Urgency::Normal,
        respond_by: None,
        specialist,
    }
}

pub(crate) async fn matrix() -> Matrix {
    let t = threaded_consult().await;
    let mut dirs = Vec::new();
    let eva = t.eva.professional().unwrap();
    let read = t.eva_device.catch_up(t.consult).await.unwrap();
    let attachment = read[0].attachments[0].id;
    // Ended before the handover: closed on a safety-sensitive ground after
    // Eva took part, and declined.
    let safety = LegalBasis {
        ground: LegalGround::VeiligThuisReport,
        justification: JUSTIFICATION.into(),
        safety_sensitive: true,
    };
    let closed = t
        .sanne
        .open_consult(&family_consult(&t, safety, Some(eva)))
        .await
        .unwrap()
        .id;
    t.eva.accept_consult(closed).await.unwrap();
    t.sanne
        .close_consult(closed, Outcome::AdviceGiven)
        .await
        .unwrap();
    let declined = t
        .sanne
        .open_consult(&family_consult(
            &t,
            LegalBasis::consent(t.consent),
            Some(eva),
        ))
        .await
        .unwrap()
        .id;
    t.eva
        .decline_consult(declined, DeclineReason::NoCapacity, "")
        .await
        .unwrap();
    // Handed over to Daan; Eva's device moves the group to him.
    let daan = t
        .server
        .professional(ORG_A, "Daan", &[Role::ContactPerson], &[])
        .await;
    let daan_device = device(&daan, &mut dirs).await;
    t.sanne
        .hand_over_family(t.family.id, daan.professional().unwrap())
        .await
        .unwrap();
    t.eva_device.sync_members(t.consult).await.unwrap();
    daan_device.catch_up(t.consult).await.unwrap();
    t.eva_device
        .send(t.consult, "Mijn antwoord", None)
        .await
        .unwrap();
    let thread = thread_entries(&t.eva, t.eva_device.device(), t.consult).await;
    let is = |kind: v1::ThreadEntryKind| move |e: &&v1::ThreadEntry| e.kind == kind as i32;
    let message = thread
        .iter()
        .rev()
        .find(is(v1::ThreadEntryKind::Application))
        .unwrap();
    let commit = thread.iter().find(is(v1::ThreadEntryKind::Commit)).unwrap();

    let noor = t
        .server
        .professional(ORG_C, "Noor", &[Role::ContactPerson], &[])
        .await;
    let olga = t
        .server
        .professional(ORG_B, "Olga", &[Role::Specialist], &[ABUSE])
        .await;
    let pia = t
        .server
        .professional(ORG_D, "Pia", &[Role::PrivacyOfficer], &[])
        .await;
    let noor_device = device(&noor, &mut dirs).await.device();
    let olga_device = device(&olga, &mut dirs).await.device();
    let own = t.server.connect(ORG_A).await.channel();
    let actors = vec![
        Actor {
            name: "no professional",
            channel: own.clone(),
            professional: None,
            device: None,
        },
        Actor {
            name: "another organisation's professional under this certificate",
            channel: own,
            professional: Some(eva),
            device: None,
        },
        Actor {
            name: "an uninvolved contact person of another organisation",
            channel: noor.channel(),
            professional: noor.professional(),
            device: Some(noor_device),
        },
        Actor {
            name: "an uninvolved specialist",
            channel: olga.channel(),
            professional: olga.professional(),
            device: Some(olga_device),
        },
        Actor {
            name: "an unrelated privacy officer",
            channel: pia.channel(),
            professional: pia.professional(),
            device: None,
        },
        Actor {
            name: "the previous contact person",
            channel: t.sanne.channel(),
            professional: t.sanne.professional(),
            device: Some(t.sanne_device.device()),
        },
    ];
    let values = Values {
        family: t.family.id,
        members: [t.family.members[0].id, t.family.members[1].id],
        consult: t.consult,
        consent: t.consent,
        attachment,
        device: t.eva_device.device(),
        professional: eva,
        mls_message: message.mls_message.clone(),
        commit: commit.mls_message.clone(),
        epoch: message.epoch,
        now: t.server.clock_now(),
    };
    Matrix {
        t,
        daan,
        daan_device,
        closed,
        declined,
        values,
        actors,
        _dirs: dirs,
    }
}

/// `text` with every id of `ids` written as "ID".
fn neutral(text: &str, ids: &[String]) -> String {
    ids.iter()
        .fold(text.to_owned(), |text, id| text.replace(id, "ID"))
}

/// One call of the matrix: a method, an actor, the consult and device its
/// ids name.
struct Case<'a> {
    method: &'a Method,
    actor: &'a Actor,
    values: Values,
    /// Whether the call is open by design for this actor.
    open: bool,
    /// What it is, for the report.
    label: String,
}

/// Every case of `method` for `actor`: each consult (open, closed,
/// declined) when the method names one, each with a participant's device
/// and, where the actor has one, their own.
fn cases<'a>(m: &Matrix, actor: &'a Actor, method: &'a Method) -> Vec<Case<'a>> {
    let mut consults = vec![(m.t.consult, "open")];
    if method.has_field("consult_id") {
        consults.extend([(m.closed, "closed"), (m.declined, "declined")]);
    }
    let mut devices = vec![(m.values.device, false)];
    if method.has_field("device_id")
        && let Some(own) = actor.device
        && !NOT_FOR_OWN_DEVICE.contains(&method.name.as_str())
    {
        devices.push((own, true));
    }
    let mut all = Vec::new();
    for &(consult, state) in &consults {
        for &(device, own) in &devices {
            all.push(Case {
                method,
                actor,
                values: Values {
                    consult,
                    device,
                    ..m.values.clone()
                },
                open: OPEN.contains(&method.name.as_str())
                    || (own && OPEN_FOR_OWN_DEVICE.contains(&method.name.as_str())),
                label: format!(
                    "{} as {} ({state} consult, {} device)",
                    method.name,
                    actor.name,
                    if own { "own" } else { "a participant's" }
                ),
            });
        }
    }
    all
}

impl Case<'_> {
    async fn call(&self, values: &Values) -> (Vec<u8>, Answer) {
        let body = raw::request(self.method, values);
        let answer = within(
            &self.label,
            raw::call(
                self.actor.channel.clone(),
                self.method,
                self.actor.professional,
                vec![body.clone()],
            ),
        )
        .await;
        (body, answer)
    }

    /// Makes the call with real ids and, when refused, with ids that
    /// exist nowhere; returns the first answer, or what is wrong.
    async fn run(&self, m: &Matrix) -> Result<Answer, String> {
        let (body, answer) = self.call(&self.values).await;
        if let Some(problem) = judge(m, self, &body, &answer) {
            return Err(format!("{}: {problem}", self.label));
        }
        if self.open && answer.code == Code::Ok {
            return Ok(answer);
        }
        // The same refusal, word for word, for ids that exist nowhere.
        let unknown = self.values.unknown();
        let (_, elsewhere) = self.call(&unknown).await;
        let said = (answer.code, neutral(&answer.message, &self.values.probed()));
        let said_elsewhere = (
            elsewhere.code,
            neutral(&elsewhere.message, &unknown.probed()),
        );
        if said != said_elsewhere {
            return Err(format!(
                "{}: {said:?} for real ids, {said_elsewhere:?} for unknown ones",
                self.label
            ));
        }
        Ok(answer)
    }
}

#[tokio::test]
async fn every_method_refuses_every_wrong_actor_alike_for_real_and_unknown_ids() {
    let m = matrix().await;
    let methods = raw::methods();
    let mut failures = Vec::new();
    // Per actor: calls with real ids, denied, answered by an open call.
    let mut counts: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    for actor in &m.actors {
        for method in &methods {
            for case in cases(&m, actor, method) {
                let count = counts.entry(actor.name).or_default();
                count.0 += 1;
                match case.run(&m).await {
                    Ok(answer) if answer.is_denial() => count.1 += 1,
                    Ok(_) => count.2 += 1,
                    Err(failure) => failures.push(failure),
                }
            }
        }
    }
    let total: usize = counts.values().map(|c| c.0).sum();
    let denied: usize = counts.values().map(|c| c.1).sum();
    let open: usize = counts.values().map(|c| c.2).sum();
    eprintln!(
        "matrix: {} methods x {} wrong actors: {total} calls with real ids, {denied} denied, \
         {open} answered by a call open by design; per actor {counts:?}",
        methods.len(),
        m.actors.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// What is wrong with `answer` to the call of `case`, made with `body`.
fn judge(m: &Matrix, case: &Case<'_>, body: &[u8], answer: &Answer) -> Option<String> {
    let actor = case.actor;
    let expected = match actor.professional {
        None => Some(Code::Unauthenticated),
        Some(id) if actor.device.is_none() && id == m.values.professional => {
            Some(Code::PermissionDenied)
        }
        _ => None,
    };
    if let Some(code) = expected
        && answer.code != code
    {
        return Some(format!(
            "{:?} {:?}, expected {code:?}",
            answer.code, answer.message
        ));
    }
    if !(answer.is_denial() || case.open && answer.code == Code::Ok) {
        return Some(format!(
            "not refused: {:?} {:?}",
            answer.code, answer.message
        ));
    }
    // Nothing of the family that the caller did not name itself.
    let sent = String::from_utf8_lossy(body).into_owned();
    let mut secrets: Vec<String> = [m.values.family, m.values.members[0], m.values.members[1]]
        .iter()
        .map(Uuid::to_string)
        .filter(|id| !sent.contains(id.as_str()))
        .collect();
    secrets.push(JUSTIFICATION.to_owned());
    if let Some(shown) = answer.shows(&secrets) {
        return Some(format!("the answer shows {shown}"));
    }
    None
}
