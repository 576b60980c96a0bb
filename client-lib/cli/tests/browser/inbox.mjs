// The web inbox in real headless Chromium. Mila (child expertise, Jeugd-
// bescherming) works her inbox in the page; Sanne (contact person) and
// Ruben (Mila's colleague) act through the command line, and at the end
// Sanne follows, answers, invites and closes in a page of her own. Every step waits
// for what a person would see, with no reload; an axe-core check (WCAG 2.1
// A and AA) runs on every kind of page; the page's console must stay clean
// (a CSP violation shows there).

import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const address = process.argv[2];
const shots = process.env.SAMENOP_SCREENSHOTS;
const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

function cli(profile, ...args) {
  const out = execFileSync(
    process.env.SAMENOP_BIN,
    ["--config", process.env.SAMENOP_CONFIG, "--profile", profile, "--json", ...args],
    { encoding: "utf8" },
  );
  return JSON.parse(out);
}
const SANNE = "wijkteam-oost/sanne";
const RUBEN = "jeugdbescherming/ruben";

function step(what) {
  console.log(`* ${what}`);
}

const browser = await chromium.launch({
  executablePath: process.env.SAMENOP_CHROMIUM,
  args: ["--no-sandbox"],
});
const page = await browser.newPage({ viewport: { width: 1100, height: 800 } });
const problems = [];
page.on("console", (m) => {
  // A refused request is logged by the browser too; those are checked by
  // their addresses below.
  if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) problems.push(m.text());
});
const refusals = [];
page.on("response", (r) => {
  if (r.status() >= 400) refusals.push(`${r.status()} ${new URL(r.url()).pathname}`);
});
page.on("pageerror", (e) => problems.push(String(e)));
const pending = new Map();
page.on("request", (r) => pending.set(r, `${r.method()} ${new URL(r.url()).pathname}`));
page.on("requestfinished", (r) => pending.delete(r));
page.on("requestfailed", (r) => pending.delete(r));
let loads = 0;
page.on("load", () => loads++);

async function axe(what, on = page) {
  // Evaluated through the browser's devtools protocol, which the page's
  // CSP does not govern; the page itself loads no script but its own.
  await on.evaluate(axeSource);
  const result = await on.evaluate(() =>
    // eslint-disable-next-line no-undef
    axe.run(document, { runOnly: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] }),
  );
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  assert.deepEqual(
    bad.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`),
    [],
    `axe-core on ${what}`,
  );
  console.log(`  axe-core on ${what}: no serious or critical finding (${result.violations.length} minor)`);
}

async function shot(name) {
  if (shots) await page.screenshot({ path: `${shots}/${name}.png` });
}

// Waits for `condition` in the page; when it does not come, says what the
// page shows (its status line and main text) to explain why.
async function until(what, condition, arg, on = page) {
  try {
    await on.waitForFunction(condition, arg, { timeout: 30000 });
  } catch (err) {
    const status = await on.locator("#status").innerText().catch(() => "");
    const main = await on.locator("main").innerText().catch(() => "");
    const open = [...pending.values()].join(", ");
    const form = await on.evaluate(() => {
      const text = document.getElementById("compose");
      const button = document.querySelector(".compose button[type=submit]");
      return `compose disabled=${text?.disabled} value=${JSON.stringify(text?.value)} button disabled=${button?.disabled}`;
    }).catch(() => "");
    console.log(`form: ${form}`);
    throw new Error(`${what}: ${err.message}\nstatus: ${status}\nunanswered: ${open}\nmain: ${main}`);
  }
}

// Waits until the page has asked for nothing for a moment (its event
// stream aside): events redraw it, and a click that lands while the
// composer is replaced goes to neither the old one nor the new one.
async function settle() {
  let quiet = 0;
  while (quiet < 3) {
    await page.waitForTimeout(100);
    const busy = [...pending.values()].some((r) => r !== "GET /events");
    quiet = busy ? 0 : quiet + 1;
  }
}

const cards = () => page.locator("#requests li").count();
const card = (id) => page.locator(`li[data-consult="${id}"]`);

step("Mila opens the address samenop printed; the token leaves the address bar");
await page.goto(address);
await page.waitForSelector("#requests, main .empty");
assert.ok(!page.url().includes("token"), page.url());
assert.equal(await page.locator("html").getAttribute("lang"), "nl");
const firstLoads = loads;

step("a pool request arrives while she looks, without a reload");
const first = cli(SANNE, "open", "--anonymous", "--expertise", "child", "--urgency", "soon",
  "--question", "Hoe ondersteunen we een 9-jarige die niet meer naar school wil?");
await card(first.id).waitFor();
assert.equal(loads, firstLoads, "no reload");
// Who asks: the contact person and her organisation, by name.
assert.match(await card(first.id).innerText(), /Sanne Contact \(Wijkteam Demostad-Oost\)/);
assert.match(await page.locator("#badge").innerText(), /^[1-9]/);

step("a second arrives; her colleague Ruben takes it, and it leaves her inbox at once");
const second = cli(SANNE, "open", "--anonymous", "--expertise", "child", "--urgency", "acute",
  "--question", "Vader wil de kinderen meenemen naar het buitenland. Wat nu?");
await card(second.id).waitFor();
const before = await cards();
// Acute first.
assert.equal(await page.locator("#requests li").first().getAttribute("data-consult"), second.id);
cli(RUBEN, "accept", second.id);
await card(second.id).waitFor({ state: "detached" });
assert.equal(await cards(), before - 1);
assert.equal(loads, firstLoads, "no reload");
await shot("inbox");
await axe("the inbox");

step("with the keyboard only, she opens the request and accepts it");
let reached = false;
for (let i = 0; i < 40 && !reached; i++) {
  await page.keyboard.press("Tab");
  reached = await page.evaluate(
    (id) => document.activeElement?.closest(`li[data-consult="${id}"]`) !== null,
    first.id,
  );
}
assert.ok(reached, "the request's link is reachable with Tab");
const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
assert.notEqual(outline, "none", "the focus is visible");
await page.keyboard.press("Enter");
await page.waitForSelector("#accept");
assert.match(await page.locator("main").innerText(), /niet meer naar school/);
await shot("request");
await axe("a request");
await page.focus("#accept");
await page.keyboard.press("Enter");
await page.waitForSelector("#compose");
await until("the participants by name", () => /Mila Jeugd/.test(document.getElementById("participants")?.textContent));
assert.match(await page.locator("#participants").innerText(), /Sanne Contact.*Wijkteam Demostad-Oost.*contactpersoon/);

step("Sanne writes; the message appears in Mila's thread, decrypted on her machine");
cli(SANNE, "send", first.id, "Moeder vertelt dat het kind buikpijn heeft op schooldagen.");
await page.locator("#thread li").first().waitFor();
assert.match(await page.locator("#thread").innerText(), /buikpijn/);

step("Mila answers; Sanne reads the answer decrypted");
await settle();
await page.fill("#compose", "Ik stel voor dat we de intern begeleider erbij halen. Ik bel moeder morgen.");
await page.click(".compose button[type=submit]");
await until("her answer in the thread", () => document.querySelectorAll("#thread li").length === 2);
await shot("consult");
await axe("a consult's thread");
const read = cli(SANNE, "read", first.id);
assert.ok(read.messages.some((m) => m.text.startsWith("Ik stel voor dat we de intern begeleider")), JSON.stringify(read));

step("Mila attaches a file (its upload's progress shown); she and Sanne download it byte-equal");
const files = mkdtempSync(join(tmpdir(), "samenop-browser-"));
const report = Buffer.alloc(700 * 1024);
for (let i = 0; i < report.length; i++) report[i] = (i * 7919) % 251;
writeFileSync(join(files, "verslag.pdf"), report);
await settle();
await page.setInputFiles("#attach", join(files, "verslag.pdf"));
await page.fill("#compose", "Het verslag van het schoolgesprek.");
await page.click(".compose button[type=submit]");
await until("the attachment in the thread", () => document.querySelectorAll("#thread li").length === 3);
const link = page.locator("#thread .attachment a").first();
assert.match(await link.innerText(), /verslag\.pdf/);
const [download] = await Promise.all([page.waitForEvent("download"), link.click()]);
const saved = join(files, "mila.pdf");
await download.saveAs(saved);
assert.ok(readFileSync(saved).equals(report), "Mila's download is the file");
assert.equal(download.suggestedFilename(), "verslag.pdf");
// A sender's file is never shown in the page's origin, only saved.
const served = await page.evaluate(async (href) => {
  const answer = await fetch(href);
  return [answer.headers.get("content-type"), answer.headers.get("content-disposition")];
}, await link.getAttribute("href"));
assert.equal(served[0], "application/octet-stream");
assert.match(served[1], /^attachment; filename\*=UTF-8''verslag\.pdf$/);
const listed = cli(SANNE, "read", first.id);
const attachment = listed.messages.flatMap((m) => m.attachments)[0];
cli(SANNE, "download", first.id, attachment.id, "--out", join(files, "sanne.pdf"));
assert.ok(readFileSync(join(files, "sanne.pdf")).equals(report), "Sanne's download is the file");

step("a consult on consent: revoking it suspends the consult in the page, and sending is refused");
const family = cli(SANNE, "family", "register", "--member", "parent:16+", "--member", "child:16+");
const consent = cli(SANNE, "consent", "record", family.id, "--concerned", "2", "--given-by", "1",
  "--given-by", "2", "--expertise", "child", "--evidence", "gesprek");
const third = cli(SANNE, "open", "--family", family.id, "--concerned", "2", "--consent", consent.id,
  "--expertise", "child", "--question", "Hoe praten we met een 16-jarige over haar thuissituatie?");
await page.goto(`${new URL(address).origin}/#/consult/${third.id}`);
await page.waitForSelector("#accept");
await page.click("#accept");
await page.waitForSelector("#compose");
cli(SANNE, "send", third.id, "Ze wil eerst zelf met iemand praten.");
await page.locator("#thread li").first().waitFor();
assert.ok(await page.isEnabled("#compose"));
const loadsBefore = loads;
cli(SANNE, "consent", "revoke", consent.id, "--family", family.id, "--reason", "withdrawn");
await page.waitForFunction(() => document.getElementById("consult-state")?.textContent === "opgeschort (toestemming ingetrokken)");
assert.equal(loads, loadsBefore, "no reload");
assert.ok(await page.isDisabled("#compose"), "writing is disabled");
assert.match(await page.locator(".compose").innerText(), /opgeschort/);
const refused = await page.evaluate(async (id) => {
  const { csrf } = await (await fetch("/api/session")).json();
  const answer = await fetch(`/api/consults/${id}/messages`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-csrf-token": csrf },
    body: JSON.stringify({ text: "nog één vraag" }),
  });
  return { status: answer.status, body: await answer.json() };
}, third.id);
assert.equal(refused.status, 409, JSON.stringify(refused));

step("she declines a request for another reason: a note is asked for, then it leaves her inbox");
const fourth = cli(SANNE, "open", "--anonymous", "--expertise", "child",
  "--question", "Kan iemand meekijken naar een onderzoek van vorig jaar?");
await page.goto(`${new URL(address).origin}/#/`);
await card(fourth.id).waitFor();
await card(fourth.id).locator("a").click();
await page.click("#decline");
await page.selectOption("#decline-reason", "other");
await page.click(".decline button[type=submit]");
await page.waitForFunction(() => document.getElementById("status").textContent.includes("toelichting"));
await page.fill("#decline-note", "Ik ken het gezin privé.");
await page.click(".decline button[type=submit]");
await page.waitForSelector("#requests, main .empty");
assert.equal(await card(fourth.id).count(), 0, "declined, it is not in her inbox");

step("Sanne opens her own inbox in the browser: she follows, answers, invites and closes");
// From here on Sanne's keys are her page's (one owner of a device's MLS
// state): the command line no longer writes with them.
const sanneInbox = spawn(
  process.env.SAMENOP_BIN,
  ["--config", process.env.SAMENOP_CONFIG, "--profile", SANNE, "inbox", "--web"],
  { stdio: ["ignore", "pipe", "inherit"] },
);
// A failed step ends this script; Sanne's inbox must not outlive it.
process.on("exit", () => sanneInbox.kill("SIGTERM"));
const sanneAddress = await new Promise((resolve, reject) => {
  let out = "";
  sanneInbox.stdout.on("data", (chunk) => {
    out += chunk;
    const line = out.split("\n")[0];
    if (out.includes("\n")) resolve(line.trim());
  });
  sanneInbox.on("exit", (code) => reject(new Error(`Sanne's inbox stopped (${code})`)));
});
// A window 1280 px wide at 200% zoom: 640 CSS pixels at device scale 2.
const zoomed = await browser.newContext({ viewport: { width: 640, height: 720 }, deviceScaleFactor: 2 });
const sanne = await zoomed.newPage();
sanne.on("console", (m) => {
  if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) problems.push(`Sanne: ${m.text()}`);
});
sanne.on("pageerror", (e) => problems.push(`Sanne: ${e}`));
await sanne.goto(sanneAddress);
await sanne.waitForSelector("#requests, main .empty");
await page.goto(`${new URL(address).origin}/#/consult/${first.id}`);
await page.waitForSelector("#compose");
await sanne.goto(`${new URL(sanneAddress).origin}/#/consults`);
await sanne.locator(`li[data-consult="${first.id}"] a`).click();
await sanne.waitForSelector("#thread");
assert.match(await sanne.locator("#thread").innerText(), /intern begeleider/, "Mila's answer, decrypted in Sanne's page");
assert.match(await sanne.locator("#thread").innerText(), /verslag\.pdf/);
const wide = await sanne.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
assert.ok(wide <= 1, `at 200% zoom the consult scrolls sideways by ${wide}px`);
await axe("a consult of one's own (contact person, at 200% zoom)", sanne);
await sanne.fill("#compose", "Dank je. Ik plan het gesprek met de intern begeleider.");
await sanne.click(".compose button[type=submit]");
await until("Sanne's answer in Mila's page, live", () =>
  [...document.querySelectorAll("#thread li")].some((li) => li.textContent.includes("Ik plan het gesprek")));

step("Sanne invites Mila's colleague Ruben; he sees the invitation");
await until("specialists to invite", () => document.querySelectorAll("#invite-who option").length > 1, undefined, sanne);
const ruben = cli(RUBEN, "whoami");
await sanne.selectOption("#invite-who", ruben.id);
await sanne.click("#invite-send");
await until("Ruben among the participants", () => /Ruben Scheiding/.test(document.getElementById("participants")?.textContent), undefined, sanne);
const invitedConsult = cli(RUBEN, "show", first.id);
assert.ok(
  invitedConsult.participants.some((p) => p.professional_id === ruben.id && p.status === "invited"),
  JSON.stringify(invitedConsult.participants),
);

step("Sanne closes the consult with its outcome; Mila's page says so at once and takes no more writing");
await sanne.selectOption("#close-outcome", "advice-given");
await sanne.click("#close-send");
await until("the closing in Mila's page", () => document.getElementById("consult-state")?.textContent === "afgesloten (advies gegeven)");
assert.ok(await page.isDisabled("#compose"), "writing is disabled");
await until("the closing in Sanne's page", () => document.getElementById("consult-state")?.textContent.startsWith("afgesloten"), undefined, sanne);
await zoomed.close();
sanneInbox.kill("SIGTERM");

step("a narrow window (as at 200% zoom and more) needs no sideways scrolling; English on request");
await page.setViewportSize({ width: 360, height: 800 });
await page.goto(`${new URL(address).origin}/#/`);
await page.waitForSelector("#requests, main .empty");
const sideways = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
assert.ok(sideways <= 1, `scrolls sideways by ${sideways}px`);
await page.selectOption("#language", "en");
await page.waitForFunction(() => document.querySelector("main h1")?.textContent.startsWith("Requests"));
assert.equal(await page.locator("html").getAttribute("lang"), "en");

assert.deepEqual(problems, [], "the page's console");
// The one refusal this test asked for, and the declined request, which
// the page may have asked for once more (its change arrived while it was
// shown) before it went back to the inbox.
const expected = new Set([`409 /api/consults/${third.id}/messages`, `404 /api/consults/${fourth.id}`]);
assert.deepEqual(refusals.filter((r) => !expected.has(r)), [], "refused requests");
await browser.close();
console.log("every step did what it should");
