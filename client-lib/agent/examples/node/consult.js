// A whole consult through two samenop agents, from Node.js: the flow of the
// Python example, shorter. Sanne (contact person, Wijkteam Demostad-Oost)
// and Jeroen (partner-violence specialist, Veilig Thuis Demoregio) each work
// through their organisation's agent, which holds the keys: this program
// sends and reads plain text over an end-to-end encrypted thread.
//
// Exits 0 only if every step did what it should.

"use strict";

const fs = require("node:fs");
const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const protoDir = path.resolve(__dirname, "../../../../proto");
const definitions = protoLoader.loadSync(
  [
    "samenop/v1/directory.proto",
    "samenop/v1/family.proto",
    "samenop/v1/consult.proto",
    "samenop/agent/v1/agent.proto",
  ],
  { includeDirs: [protoDir], keepCase: true, enums: String, longs: Number, defaults: true, oneofs: true },
);
const samenop = grpc.loadPackageDefinition(definitions).samenop;

const PARTNER_VIOLENCE = { domain: "EXPERTISE_DOMAIN_VIOLENCE", violence_type: "VIOLENCE_TYPE_PARTNER_VIOLENCE" };

function fail(what) {
  console.log(`  FAILED: ${what}`);
  process.exit(1);
}

function check(condition, what) {
  if (!condition) fail(what);
  console.log(`  ok: ${what}`);
}

// A client of `Service` on the agent at `address` (unix:/path): the HTTP/2
// authority is localhost, not the socket's path, which the agent refuses.
function client(Service, address) {
  return new Service(address, grpc.credentials.createInsecure(), { "grpc.default_authority": "localhost" });
}

// Who a call acts for.
function acting(professional) {
  const metadata = new grpc.Metadata();
  metadata.set("samenop-professional", professional);
  return metadata;
}

// A unary call as a promise.
function call(stub, method, request, professional) {
  return new Promise((resolve, reject) =>
    stub[method](request, acting(professional), (err, answer) => (err ? reject(err) : resolve(answer))),
  );
}

// A Watch, with a way to wait for the next event that `wanted` accepts;
// resolved once the agent's headers say the professional's device is open
// at the server, as only what happens from then on reaches it.
async function watch(stub, professional) {
  const events = [];
  let waiting = null;
  const stream = stub.Watch({ cursor: "" }, acting(professional));
  stream.on("data", (event) => {
    events.push(event);
    if (waiting) waiting();
  });
  await new Promise((resolve, reject) => {
    stream.on("metadata", resolve);
    stream.on("error", reject);
  });
  stream.on("error", () => {});
  return {
    stream,
    async next(wanted, what) {
      const deadline = Date.now() + 20000;
      for (;;) {
        const found = events.findIndex(wanted);
        if (found >= 0) return events.splice(0, found + 1)[found];
        if (Date.now() > deadline) fail(`waited 20 s in vain for ${what}`);
        await new Promise((resolve) => {
          waiting = resolve;
          setTimeout(resolve, 200);
        });
      }
    },
  };
}

async function main() {
  const network = JSON.parse(fs.readFileSync(process.env.SAMENOP_NETWORK, "utf8"));
  const id = (name) => network.people.find((p) => p.name === name).id;
  const sanne = id("Sanne Contact");
  const jeroen = id("Jeroen Partnergeweld");
  const wijkteam = process.env.SAMENOP_WIJKTEAM_AGENT;
  const veiligThuis = process.env.SAMENOP_VEILIG_THUIS_AGENT;
  const families = client(samenop.v1.FamilyService, wijkteam);
  const sanneConsults = client(samenop.v1.ConsultService, wijkteam);
  const jeroenConsults = client(samenop.v1.ConsultService, veiligThuis);
  const sanneThreads = client(samenop.agent.v1.AgentService, wijkteam);
  const jeroenThreads = client(samenop.agent.v1.AgentService, veiligThuis);

  console.log("\n* Jeroen's system watches; Sanne registers a family and records consent");
  const jeroenWatch = await watch(jeroenThreads, jeroen);
  const { family } = await call(families, "RegisterFamily", {
    members: [
      { role: "FAMILY_MEMBER_ROLE_PARENT_OR_CARER", age_band: "AGE_BAND_FROM_16" },
      { role: "FAMILY_MEMBER_ROLE_CHILD", age_band: "AGE_BAND_FROM_16" },
    ],
  }, sanne);
  const [mother, son] = family.members.map((m) => m.member_id);
  const until = { seconds: Math.floor(Date.now() / 1000) + 90 * 86400, nanos: 0 };
  const { consent } = await call(families, "RecordConsent", {
    family_id: family.family_id,
    concerned_member_ids: [mother, son],
    given_by_member_ids: [mother, son],
    purpose: "PURPOSE_CONSULTATION",
    scope: { expertise: [PARTNER_VIOLENCE] },
    valid_until: until,
    evidence_reference: "gesprek 1 december",
  }, sanne);
  check(consent.status === "CONSENT_STATUS_ACTIVE", `family ${family.family_id}, consent ${consent.consent_id}`);

  console.log("\n* Sanne asks the partner-violence pool; Jeroen sees it and accepts");
  const { consult } = await call(sanneConsults, "OpenConsult", {
    kind: "CONSULT_KIND_FAMILY",
    family_id: family.family_id,
    concerned_member_ids: [mother],
    question_summary: "Hoe schatten jullie de veiligheid thuis in?",
    expertise: PARTNER_VIOLENCE,
    urgency: "URGENCY_SOON",
    legal_basis: { ground: "LEGAL_GROUND_CONSENT", consent_id: consent.consent_id },
  }, sanne);
  const request = await jeroenWatch.next(
    (e) => e.consult && e.consult.consult && e.consult.consult.consult_id === consult.consult_id,
    "the request",
  );
  await call(jeroenConsults, "AcceptConsult", { consult_id: consult.consult_id }, jeroen);
  check(true, `request "${request.consult.consult.question_summary}" accepted`);

  console.log("\n* Sanne writes; Jeroen reads it decrypted, and answers with a file");
  const first = await call(sanneThreads, "SendMessage", {
    consult_id: consult.consult_id,
    text: "Moeder meldt dreiging door haar ex-partner.",
  }, sanne);
  const seen = await jeroenWatch.next((e) => e.message, "Sanne's message");
  check(seen.message.sequence === first.sequence, `Jeroen reads #${seen.message.sequence}: ${seen.message.text}`);
  const plan = Buffer.from("Veiligheidsplan (concept)\n".repeat(1000));
  const sent = await new Promise((resolve, reject) => {
    const upload = jeroenThreads.SendAttachment(acting(jeroen), (err, answer) => (err ? reject(err) : resolve(answer)));
    upload.write({
      start: {
        consult_id: consult.consult_id,
        text: "Het concept van het veiligheidsplan.",
        name: "veiligheidsplan.txt",
        media_type: "text/plain",
        size_bytes: plan.length,
        reply_to_sequence: first.sequence,
      },
    });
    for (let i = 0; i < plan.length; i += 8192) upload.write({ chunk: plan.subarray(i, i + 8192) });
    upload.end();
  });
  const thread = await call(sanneThreads, "ReadThread", { consult_id: consult.consult_id }, sanne);
  for (const m of thread.messages) console.log(`  #${m.sequence} ${m.own ? "Sanne" : "Jeroen"}: ${m.text}`);
  check(thread.messages.length === 2 && thread.messages[1].attachments[0].size_bytes === plan.length,
    `Sanne reads both, the file of ${plan.length} bytes with the second (#${sent.sequence})`);

  console.log("\n* Sanne closes the consult");
  const closed = await call(sanneConsults, "CloseConsult", {
    consult_id: consult.consult_id,
    outcome: "CONSULT_OUTCOME_JOINT_APPROACH",
  }, sanne);
  check(closed.consult.state === "CONSULT_STATE_CLOSED", "closed");
  jeroenWatch.stream.cancel();
  console.log("\nevery step did what it should");
  process.exit(0);
}

main().catch((err) => fail(err.details || err.message));
