"""A whole consult through two samenop agents, from Python.

Sanne, contact person at Wijkteam Demostad-Oost, works through her
organisation's agent; Jeroen, partner-violence specialist at Veilig Thuis
Demoregio, through his. The agents hold the keys: this program sends and
reads plain text, and the thread is end-to-end encrypted between their two
devices. Families, consent and consults are the samenop.v1 services, called
on the agent with the same stubs as on the server.

Exits 0 only if every step did what it should.
"""

import datetime
import json
import os
import queue
import sys
import threading

import grpc
from google.protobuf import timestamp_pb2

from samenop.agent.v1 import agent_pb2, agent_pb2_grpc
from samenop.v1 import common_pb2, consult_pb2, consult_pb2_grpc, family_pb2, family_pb2_grpc

PARTNER_VIOLENCE = common_pb2.Expertise(
    domain=common_pb2.EXPERTISE_DOMAIN_VIOLENCE,
    violence_type=common_pb2.VIOLENCE_TYPE_PARTNER_VIOLENCE,
)


def person(network, name):
    """A demo professional's id, by name."""
    for p in network["people"]:
        if p["name"] == name:
            return p["id"]
    sys.exit(f"no {name} in the demo network")


def acting(professional):
    """The metadata every call carries: who it acts for."""
    return (("samenop-professional", professional),)


def agent_channel(address):
    """A channel to an agent at `unix:/path` (or `127.0.0.1:port`).

    On a Unix socket grpcio would send the socket's path as the HTTP/2
    authority, which the agent's HTTP/2 server refuses as malformed; the
    authority is set to localhost instead.
    """
    return grpc.insecure_channel(address, options=[("grpc.default_authority", "localhost")])


def step(text):
    print(f"\n* {text}", flush=True)


def check(condition, what):
    if not condition:
        print(f"  FAILED: {what}", flush=True)
        sys.exit(1)
    print(f"  ok: {what}", flush=True)


class Watch:
    """A Watch on an agent, read in the background into a queue."""

    def __init__(self, channel, professional, cursor=""):
        self.events = queue.Queue()
        self.call = agent_pb2_grpc.AgentServiceStub(channel).Watch(
            agent_pb2.WatchRequest(cursor=cursor), metadata=acting(professional)
        )
        # The agent answers with headers once the professional's device is
        # open at the server; only what happens from then on reaches it.
        self.call.initial_metadata()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for event in self.call:
                self.events.put(event)
        except grpc.RpcError:
            pass

    def next(self, wanted, what, timeout=20):
        """The next event `wanted` accepts, skipping others."""
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=timeout)
        while True:
            left = (deadline - datetime.datetime.now()).total_seconds()
            if left <= 0:
                sys.exit(f"  FAILED: waited {timeout}s in vain for {what}")
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if wanted(event):
                return event

    def close(self):
        self.call.cancel()


def main():
    network = json.load(open(os.environ["SAMENOP_NETWORK"]))
    sanne = person(network, "Sanne Contact")
    jeroen = person(network, "Jeroen Partnergeweld")
    wijkteam = agent_channel(os.environ["SAMENOP_WIJKTEAM_AGENT"])
    veilig_thuis = agent_channel(os.environ["SAMENOP_VEILIG_THUIS_AGENT"])
    families = family_pb2_grpc.FamilyServiceStub(wijkteam)
    sanne_consults = consult_pb2_grpc.ConsultServiceStub(wijkteam)
    jeroen_consults = consult_pb2_grpc.ConsultServiceStub(veilig_thuis)
    sanne_threads = agent_pb2_grpc.AgentServiceStub(wijkteam)
    jeroen_threads = agent_pb2_grpc.AgentServiceStub(veilig_thuis)

    step("Jeroen's system watches for consult requests")
    watch = Watch(veilig_thuis, jeroen)

    step("Sanne registers a family: a mother, a 16-year-old and a 9-year-old")
    family = families.RegisterFamily(
        family_pb2.RegisterFamilyRequest(
            members=[
                family_pb2.FamilyMember(
                    role=family_pb2.FAMILY_MEMBER_ROLE_PARENT_OR_CARER,
                    age_band=family_pb2.AGE_BAND_FROM_16,
                ),
                family_pb2.FamilyMember(
                    role=family_pb2.FAMILY_MEMBER_ROLE_CHILD,
                    age_band=family_pb2.AGE_BAND_FROM_16,
                ),
                family_pb2.FamilyMember(
                    role=family_pb2.FAMILY_MEMBER_ROLE_CHILD,
                    age_band=family_pb2.AGE_BAND_UNDER_12,
                ),
            ]
        ),
        metadata=acting(sanne),
    ).family
    mother, son, daughter = [m.member_id for m in family.members]
    check(len(family.members) == 3, f"family {family.family_id} registered")

    step("the mother and the 16-year-old consent to partner-violence expertise")
    until = timestamp_pb2.Timestamp()
    until.FromDatetime(datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=90))
    consent = families.RecordConsent(
        family_pb2.RecordConsentRequest(
            family_id=family.family_id,
            concerned_member_ids=[mother, son],
            given_by_member_ids=[mother, son],
            purpose=common_pb2.PURPOSE_CONSULTATION,
            scope=family_pb2.ConsentScope(expertise=[PARTNER_VIOLENCE]),
            valid_until=until,
            evidence_reference="gesprek 1 december",
        ),
        metadata=acting(sanne),
    ).consent
    check(consent.consent_id != "", f"consent {consent.consent_id} recorded")

    step("the 9-year-old cannot consent on her own")
    try:
        families.RecordConsent(
            family_pb2.RecordConsentRequest(
                family_id=family.family_id,
                concerned_member_ids=[daughter],
                given_by_member_ids=[daughter],
                purpose=common_pb2.PURPOSE_CONSULTATION,
                scope=family_pb2.ConsentScope(expertise=[PARTNER_VIOLENCE]),
                valid_until=until,
                evidence_reference="gesprek 1 december",
            ),
            metadata=acting(sanne),
        )
        check(False, "the server refuses")
    except grpc.RpcError as refused:
        print(f"  the server refuses: {refused.details()}")
        check(refused.code() == grpc.StatusCode.FAILED_PRECONDITION, "refused as a precondition")

    step("Sanne asks the partner-violence pool")
    consult = sanne_consults.OpenConsult(
        consult_pb2.OpenConsultRequest(
            kind=consult_pb2.CONSULT_KIND_FAMILY,
            family_id=family.family_id,
            concerned_member_ids=[mother],
            question_summary="Hoe schatten jullie de veiligheid thuis in?",
            expertise=PARTNER_VIOLENCE,
            urgency=consult_pb2.URGENCY_SOON,
            legal_basis=common_pb2.LegalBasis(
                ground=common_pb2.LEGAL_GROUND_CONSENT, consent_id=consent.consent_id
            ),
        ),
        metadata=acting(sanne),
    ).consult
    check(consult.state == consult_pb2.CONSULT_STATE_REQUESTED, f"consult {consult.consult_id} requested")

    step("Jeroen's system sees the request, and he accepts")
    seen = watch.next(
        lambda e: e.HasField("consult") and e.consult.consult.consult_id == consult.consult_id,
        "the request",
    )
    print(f"  request: {seen.consult.consult.question_summary}")
    jeroen_consults.AcceptConsult(
        consult_pb2.AcceptConsultRequest(consult_id=consult.consult_id), metadata=acting(jeroen)
    )
    check(True, "accepted")

    step("Sanne writes in the thread; her agent encrypts it for Jeroen's device")
    first = sanne_threads.SendMessage(
        agent_pb2.SendMessageRequest(
            consult_id=consult.consult_id,
            text="Moeder meldt dreiging door haar ex-partner. Hoe veilig is het thuis?",
        ),
        metadata=acting(sanne),
    ).sequence
    joined = watch.next(
        lambda e: e.HasField("membership") and e.membership.joined, "Jeroen's device joining"
    )
    check(joined.membership.consult_id == consult.consult_id, "Jeroen's device joined the thread")
    message = watch.next(lambda e: e.HasField("message"), "Sanne's message").message
    print(f"  Jeroen reads #{message.sequence}: {message.text}")
    check(message.sequence == first and message.text.startswith("Moeder meldt"), "decrypted on Jeroen's side")

    step("Jeroen answers with a safety plan attached")
    plan = ("Veiligheidsplan (concept)\n" * 2000).encode()
    start = agent_pb2.AttachmentStart(
        consult_id=consult.consult_id,
        text="Ik stel een veiligheidsplan voor; het concept zit erbij.",
        name="veiligheidsplan.txt",
        media_type="text/plain",
        size_bytes=len(plan),
        reply_to_sequence=first,
    )
    parts = [agent_pb2.SendAttachmentRequest(start=start)] + [
        agent_pb2.SendAttachmentRequest(chunk=plan[i : i + 16384]) for i in range(0, len(plan), 16384)
    ]
    answer = jeroen_threads.SendAttachment(iter(parts), metadata=acting(jeroen))
    check(answer.attachment_id != "", f"sent as message #{answer.sequence}")

    step("Sanne reads the thread and downloads the plan")
    thread = sanne_threads.ReadThread(
        agent_pb2.ReadThreadRequest(consult_id=consult.consult_id), metadata=acting(sanne)
    )
    for m in thread.messages:
        who = "Sanne" if m.own else "Jeroen"
        extra = f" [{m.attachments[0].name}, {m.attachments[0].size_bytes} bytes]" if m.attachments else ""
        print(f"  #{m.sequence} {who}: {m.text}{extra}")
    check([m.sequence for m in thread.messages] == [first, answer.sequence], "both messages, in order")
    downloaded = b""
    for part in sanne_threads.DownloadAttachment(
        agent_pb2.DownloadAttachmentRequest(consult_id=consult.consult_id, attachment_id=answer.attachment_id),
        metadata=acting(sanne),
    ):
        if part.HasField("chunk"):
            downloaded += part.chunk
    check(downloaded == plan, f"the plan, {len(downloaded)} bytes, as Jeroen sent it")

    step("Sanne closes the consult with its outcome")
    closed = sanne_consults.CloseConsult(
        consult_pb2.CloseConsultRequest(
            consult_id=consult.consult_id, outcome=consult_pb2.CONSULT_OUTCOME_JOINT_APPROACH
        ),
        metadata=acting(sanne),
    ).consult
    check(closed.state == consult_pb2.CONSULT_STATE_CLOSED, "closed")
    try:
        sanne_threads.SendMessage(
            agent_pb2.SendMessageRequest(consult_id=consult.consult_id, text="Nog iets"),
            metadata=acting(sanne),
        )
        check(False, "a closed consult takes no messages")
    except grpc.RpcError as refused:
        check(refused.code() == grpc.StatusCode.FAILED_PRECONDITION, f"a post is refused: {refused.details()}")

    watch.close()
    print("\nevery step did what it should")


if __name__ == "__main__":
    main()
