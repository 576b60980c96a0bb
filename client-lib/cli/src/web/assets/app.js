// The inbox page: asks the local samenop process (same origin, session
// cookie, CSRF token on changes) and redraws what its event stream says
// changed. No framework: the DOM is built with createElement, never from
// HTML strings, so no text from the service is ever parsed as markup.

import { strings } from "./strings.js";
import { words } from "./words.js";

let lang = localStorage.getItem("samenop-lang") || "nl";
// What is being typed, per consult: a redraw (an event arrived) keeps it.
const drafts = new Map();
let csrf = "";
let me = null;
const t = () => strings[lang];
const w = () => words[lang];
const expertiseName = (code) => w().expertise[code] || code;
// A state in words, with why it is suspended or how it was closed.
function stateText(c) {
  const state = w().states[c.state] || c.state;
  if (c.suspension) return `${state} (${w().suspensions[c.suspension] || c.suspension})`;
  if (c.outcome) return `${state} (${w().outcomes[c.outcome] || c.outcome})`;
  return state;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function api(path, options = {}) {
  const init = { credentials: "same-origin", headers: {}, ...options };
  if (init.body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(init.body);
  }
  if (init.method && init.method !== "GET") init.headers["x-csrf-token"] = csrf;
  const response = await fetch(path, init);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const err = new Error(body.error || response.statusText);
    err.status = response.status;
    throw err;
  }
  return body;
}

// Uploads `file` with the page's CSRF token, telling `progress` (0 to 1)
// how far it is: fetch cannot report an upload's progress, XHR can.
function upload(path, file, progress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    xhr.setRequestHeader("x-csrf-token", csrf);
    xhr.setRequestHeader("content-type", file.type || "application/octet-stream");
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) progress(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      let body = {};
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = {};
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new Error(body.error || xhr.statusText));
    });
    xhr.addEventListener("error", () => reject(new Error(xhr.statusText || "network")));
    xhr.send(file);
  });
}

function size(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function say(text) {
  document.getElementById("status").textContent = text;
}

function duration(ms) {
  const minutes = Math.round(Math.abs(ms) / 60000);
  if (minutes < 60) return lang === "nl" ? `${minutes} min` : `${minutes} min`;
  const hours = Math.round(minutes / 60);
  if (hours < 48) return lang === "nl" ? `${hours} uur` : `${hours} h`;
  const days = Math.round(hours / 24);
  return lang === "nl" ? `${days} dagen` : `${days} days`;
}

function when(iso) {
  return new Date(iso).toLocaleString(lang === "nl" ? "nl-NL" : "en-GB", {
    dateStyle: "medium",
    timeStyle: "short",
  });
}

function labels() {
  const s = t();
  document.documentElement.lang = lang;
  document.getElementById("skip").textContent = s.skip;
  document.getElementById("nav").setAttribute("aria-label", s.nav);
  document.getElementById("nav-inbox-label").textContent = s.inbox;
  document.getElementById("nav-consults").textContent = s.consults;
  document.getElementById("availability-label").textContent = s.availability;
  document.getElementById("availability-available").textContent = s.available;
  document.getElementById("availability-away").textContent = s.away;
  document.getElementById("language-label").textContent = s.language;
  document.getElementById("language").value = lang;
}

function urgencyBadge(urgency) {
  return el("span", { class: `urgency urgency-${urgency}` }, w().urgency[urgency] || urgency);
}

function dueLine(c) {
  // Respond-by matters while a request waits for an answer.
  if (!c.respond_by || c.state !== "requested") return null;
  const left = new Date(c.respond_by) - Date.now();
  if (c.past_respond_by || left < 0) {
    return el("p", { class: "due past" }, `${t().pastDue} (${t().ago(duration(left))})`);
  }
  return el("p", { class: "due" }, `${t().respondBy} ${when(c.respond_by)} (${t().left(duration(left))})`);
}

function setBadge(count) {
  const badge = document.getElementById("badge");
  badge.hidden = count === 0;
  badge.textContent = String(count);
  badge.setAttribute("aria-label", `${count}`);
  document.title = count > 0 ? `(${count}) samenop` : "samenop";
}

// A page of consult cards: its title, what to say when there are none,
// and each card's own lines under the consult's expertise.
function cards(main, title, empty, items, id, lines) {
  main.replaceChildren(
    el("h1", {}, title),
    items.length === 0
      ? el("p", { class: "empty" }, empty)
      : el(
          "ul",
          { class: "cards", id },
          items.map((c) =>
            el(
              "li",
              { class: `card${c.past_respond_by ? " overdue" : ""}`, "data-consult": c.id },
              el(
                "h2",
                {},
                el("a", { href: `#/consult/${c.id}` }, expertiseName(c.expertise)),
              ),
              lines(c),
            ),
          ),
        ),
  );
}

async function showInbox(main) {
  const { requests } = await api("/api/inbox");
  setBadge(requests.length);
  cards(main, t().inboxTitle, t().inboxEmpty, requests, "requests", (c) => [
    el("p", { class: "meta" }, urgencyBadge(c.urgency), " ", c.addressed_to === "me" ? t().forYou : t().forPool),
    el("p", { class: "question" }, c.question),
    dueLine(c),
    el("p", { class: "from" }, t().from(c.owner_name, c.asking_organisation)),
  ]);
}

async function showConsults(main) {
  const { consults } = await api("/api/consults");
  cards(main, t().consultsTitle, t().consultsEmpty, consults, "consults", (c) => [
    el("p", { class: "meta" }, urgencyBadge(c.urgency), " ", stateText(c)),
    el("p", { class: "question" }, c.question),
  ]);
}

function basisText(c) {
  const basis = c.legal_basis;
  if (!basis) return t().noBasis;
  return w().grounds[basis.ground] || basis.ground;
}

function participantList(c) {
  const s = t();
  return el(
    "ul",
    { class: "participants", id: "participants" },
    c.participants.map((p) =>
      el(
        "li",
        {},
        el("strong", {}, p.me ? `${p.name} (${s.you})` : p.name),
        ` ${p.organisation} · ${p.owner ? s.owner : s.specialist} · ${w().statuses[p.status] || p.status}`,
      ),
    ),
  );
}

// The consult page keeps its composer and forms across redraws: an event
// that arrives while someone types, picks a file or fills in a form
// redraws the facts and the thread only. A part is made again only when
// what it offers changes (its `key`).
let view = null;

function keep(slot, key, make) {
  if (view[`${slot}Key`] === key) return;
  view[`${slot}Key`] = key;
  view[slot].replaceChildren(...[make()].flat().filter(Boolean));
}

async function showConsult(main, id) {
  let data;
  try {
    data = await api(`/api/consults/${encodeURIComponent(id)}`);
  } catch (err) {
    if (err.status !== 404) throw err;
    // Taken by a colleague, expired, or declined: no longer this
    // specialist's to see.
    say(t().gone);
    location.hash = "#/";
    return;
  }
  const c = data.consult;
  const s = t();
  if (!view || view.id !== c.id || view.lang !== lang || !main.contains(view.root)) {
    const slot = () => el("div");
    view = { id: c.id, lang, head: slot(), thread: slot(), composer: slot(), actions: slot() };
    view.root = el("div", {}, view.head, view.thread, view.composer, view.actions);
    main.replaceChildren(view.root);
  }
  const facts = el(
    "dl",
    { class: "facts" },
    el("dt", {}, s.state),
    el("dd", { id: "consult-state" }, stateText(c)),
    el("dt", {}, s.question),
    el("dd", {}, c.question),
    el("dt", {}, s.askedBy),
    el("dd", {}, `${c.owner_name} (${c.asking_organisation})`),
    el("dt", {}, s.basis),
    el("dd", {}, basisText(c)),
    c.justification ? [el("dt", {}, s.justification), el("dd", {}, c.justification)] : null,
    el("dt", {}, s.participants),
    el("dd", {}, participantList(c)),
  );
  view.head.replaceChildren(
    ...[el("h1", {}, expertiseName(c.expertise), " ", urgencyBadge(c.urgency)), facts, dueLine(c)].filter(Boolean),
  );
  if (c.state === "requested" && !c.own) {
    // A request has no thread yet: what to do is accept or decline.
    view.thread.replaceChildren();
    keep("composer", "none", () => null);
    keep("actions", "request", () => requestActions(c));
    return;
  }
  const notices = [];
  if (!data.joined && c.state === "accepted") notices.push(el("p", { class: "notice" }, s.notJoined));
  if (!data.readable) notices.push(el("p", { class: "notice" }, s.unreadable));
  view.thread.replaceChildren(
    el("h2", {}, s.thread),
    ...notices,
    data.messages.length === 0
      ? el("p", { class: "empty" }, s.threadEmpty)
      : el(
          "ol",
          { class: "thread", id: "thread" },
          data.messages.map((m) =>
            el(
              "li",
              { class: m.own ? "message own" : "message" },
              el(
                "p",
                { class: "who" },
                el("strong", {}, m.own ? s.you : m.sender_name || ""),
                " ",
                m.posted_at ? el("time", { datetime: m.posted_at }, when(m.posted_at)) : null,
              ),
              m.text ? el("p", { class: "text" }, m.text) : null,
              (m.attachments || []).map((a) =>
                el(
                  "p",
                  { class: "attachment" },
                  el(
                    "a",
                    { href: `/api/consults/${c.id}/attachments/${a.id}`, download: a.name },
                    s.download(a.name, size(a.size)),
                  ),
                ),
              ),
            ),
          ),
        ),
  );
  const waiting = c.own && c.state === "requested";
  const blocked =
    c.state === "accepted"
      ? data.joined
        ? null
        : s.notJoined
      : waiting
        ? s.noPosts.waiting
        : s.noPosts[c.state] || stateText(c);
  keep("composer", `${blocked}`, () => composer(c, blocked));
  const open = ["requested", "accepted", "suspended"].includes(c.state);
  if (c.own && open) keep("actions", `owner|${c.expertise}`, () => ownerActions(c));
  else if (c.state === "accepted") keep("actions", "specialist", () => leaveAction(c));
  else keep("actions", "none", () => null);
}

function leaveAction(c) {
  const s = t();
  return el(
    "p",
    { class: "actions" },
    el(
      "button",
      {
        type: "button",
        id: "leave",
        onclick: async () => {
          try {
            await api(`/api/consults/${c.id}/leave`, { method: "POST" });
            say(s.leftConsult);
            location.hash = "#/consults";
          } catch (err) {
            say(s.failed(err.message));
          }
        },
      },
      s.leave,
    ),
  );
}

// What the consult's owner (the contact person) does here: invite a
// further specialist, or close the consult with its outcome.
function ownerActions(c) {
  const s = t();
  const options = (table) => Object.entries(table).map(([value, label]) => el("option", { value }, label));
  const expertise = el("select", { id: "invite-expertise", name: "expertise" }, options(w().expertise));
  expertise.value = c.expertise;
  const who = el("select", { id: "invite-who", name: "specialist", required: true });
  const none = el("p", { class: "notice", id: "invite-none", hidden: true }, s.inviteNone);
  const load = async () => {
    const { specialists } = await api(`/api/specialists?expertise=${encodeURIComponent(expertise.value)}`);
    const taking = new Set(c.participants.map((p) => p.professional_id));
    const choices = specialists.filter((p) => !taking.has(p.id));
    who.replaceChildren(
      el("option", { value: "" }, s.choose),
      ...choices.map((p) =>
        el("option", { value: p.id }, `${p.name} (${p.organisation_name || p.organisation_oin}) · ${w().availability[p.availability] || ""}`),
      ),
    );
    none.hidden = choices.length > 0;
  };
  expertise.addEventListener("change", () => load().catch((err) => say(s.failed(err.message))));
  load().catch((err) => say(s.failed(err.message)));
  const invite = el(
    "form",
    {
      class: "invite",
      "aria-labelledby": "invite-title",
      onsubmit: async (event) => {
        event.preventDefault();
        if (!who.value) {
          who.focus();
          return;
        }
        try {
          await api(`/api/consults/${c.id}/invite`, {
            method: "POST",
            body: { specialist: who.value, expertise: expertise.value },
          });
          say(s.invited);
          view.actionsKey = null;
          await route();
        } catch (err) {
          say(s.failed(err.message));
        }
      },
    },
    el("h2", { id: "invite-title" }, s.invite),
    el("label", { for: "invite-expertise" }, s.inviteExpertise),
    expertise,
    el("label", { for: "invite-who" }, s.inviteWho),
    who,
    none,
    el("button", { type: "submit", id: "invite-send" }, s.inviteSend),
  );
  const outcome = el("select", { id: "close-outcome", name: "outcome" }, options(w().outcomes));
  const close = el(
    "form",
    {
      class: "close",
      "aria-labelledby": "close-title",
      onsubmit: async (event) => {
        event.preventDefault();
        try {
          await api(`/api/consults/${c.id}/close`, { method: "POST", body: { outcome: outcome.value } });
          say(s.closedDone);
          await route();
        } catch (err) {
          say(s.failed(err.message));
        }
      },
    },
    el("h2", { id: "close-title" }, s.close),
    el("label", { for: "close-outcome" }, s.closeOutcome),
    outcome,
    el("button", { type: "submit", id: "close-send" }, s.closeSend),
  );
  return el("div", { class: "actions owner" }, invite, close);
}

function requestActions(c) {
  const s = t();
  const reason = el(
    "select",
    { id: "decline-reason", name: "reason" },
    Object.entries(w().reasons).map(([value, label]) => el("option", { value }, label)),
  );
  const note = el("textarea", { id: "decline-note", name: "note", rows: "2" });
  const declineForm = el(
    "form",
    {
      class: "decline",
      hidden: true,
      onsubmit: async (event) => {
        event.preventDefault();
        if (reason.value === "other" && !note.value.trim()) {
          say(s.noteNeeded);
          note.focus();
          return;
        }
        try {
          await api(`/api/consults/${c.id}/decline`, {
            method: "POST",
            body: { reason: reason.value, note: note.value },
          });
          say(s.declined);
          location.hash = "#/";
        } catch (err) {
          say(s.failed(err.message));
        }
      },
    },
    el("label", { for: "decline-reason" }, s.declineReason),
    reason,
    el("label", { for: "decline-note" }, s.declineNote),
    note,
    el("button", { type: "submit" }, s.declineSend),
  );
  return el(
    "div",
    { class: "actions" },
    el(
      "button",
      {
        type: "button",
        id: "accept",
        class: "primary",
        onclick: async () => {
          try {
            await api(`/api/consults/${c.id}/accept`, { method: "POST" });
            say(s.accepted);
            route();
          } catch (err) {
            say(s.failed(err.message));
          }
        },
      },
      s.accept,
    ),
    el(
      "button",
      {
        type: "button",
        id: "decline",
        "aria-expanded": "false",
        onclick: (event) => {
          declineForm.hidden = !declineForm.hidden;
          event.currentTarget.setAttribute("aria-expanded", String(!declineForm.hidden));
          if (!declineForm.hidden) reason.focus();
        },
      },
      s.decline,
    ),
    declineForm,
  );
}

function composer(c, blocked) {
  const s = t();
  const text = el("textarea", {
    id: "compose",
    name: "text",
    rows: "3",
    disabled: Boolean(blocked),
    "aria-describedby": blocked ? "compose-blocked" : null,
  });
  text.value = drafts.get(c.id) || "";
  const file = el("input", { type: "file", id: "attach", name: "file", disabled: Boolean(blocked) });
  const bar = el("progress", { id: "upload", max: "1", value: "0", hidden: true, "aria-label": s.uploading });
  text.addEventListener("input", () => drafts.set(c.id, text.value));
  return el(
    "form",
    {
      class: "compose",
      onsubmit: async (event) => {
        event.preventDefault();
        const chosen = file.files && file.files[0];
        if (!text.value.trim() && !chosen) return;
        const button = event.currentTarget.querySelector("button");
        button.disabled = true;
        try {
          if (chosen) {
            bar.hidden = false;
            const query = new URLSearchParams({ name: chosen.name, text: text.value });
            await upload(`/api/consults/${c.id}/attachments?${query}`, chosen, (done) => {
              // Handed to this machine's samenop: it now encrypts and sends
              // it, for a time the page cannot measure.
              if (done >= 1) {
                bar.removeAttribute("value");
                bar.setAttribute("aria-label", s.encrypting);
              } else bar.value = done;
            });
          } else {
            await api(`/api/consults/${c.id}/messages`, { method: "POST", body: { text: text.value } });
          }
          drafts.delete(c.id);
          text.value = "";
          file.value = "";
          say(s.sent);
          await route();
          text.focus();
        } catch (err) {
          say(s.failed(err.message));
        } finally {
          button.disabled = Boolean(blocked);
          bar.hidden = true;
          bar.value = 0;
          bar.setAttribute("aria-label", s.uploading);
        }
      },
    },
    el("label", { for: "compose" }, s.compose),
    blocked ? el("p", { class: "notice", id: "compose-blocked" }, blocked) : null,
    text,
    el("label", { for: "attach" }, s.attach),
    file,
    bar,
    el("button", { type: "submit", class: "primary", disabled: Boolean(blocked) }, s.send),
  );
}

let routing = Promise.resolve();

function route() {
  routing = routing.then(async () => {
    const main = document.getElementById("main");
    const hash = location.hash || "#/";
    // A redraw keeps where the keyboard was.
    const focused = document.activeElement?.id;
    try {
      if (hash.startsWith("#/consult/")) await showConsult(main, hash.slice("#/consult/".length));
      else if (hash === "#/consults") await showConsults(main);
      else await showInbox(main);
      const again = focused && document.getElementById(focused);
      if (again && again !== document.activeElement) again.focus();
      if (!hash.startsWith("#/")) return;
      if (hash !== "#/") {
        api("/api/inbox").then(({ requests }) => setBadge(requests.length)).catch(() => {});
      }
    } catch (err) {
      main.replaceChildren(el("p", { class: "notice" }, t().failed(err.message)));
    }
  });
  return routing;
}

function currentConsult() {
  const hash = location.hash || "";
  return hash.startsWith("#/consult/") ? hash.slice("#/consult/".length) : null;
}

function listen() {
  const events = new EventSource("/events");
  const onChange = (event) => {
    const shown = currentConsult();
    if (!shown || shown === event.data) route();
    else api("/api/inbox").then(({ requests }) => setBadge(requests.length)).catch(() => {});
  };
  events.addEventListener("consult", onChange);
  events.addEventListener("thread", onChange);
  events.addEventListener("reload", () => route());
}

async function start() {
  labels();
  document.getElementById("loading").textContent = t().loading;
  const session = await api("/api/session");
  csrf = session.csrf;
  me = session.me;
  document.getElementById("me-name").textContent = me.name;
  const availability = document.getElementById("availability");
  availability.value = me.availability === "away" ? "away" : "available";
  availability.addEventListener("change", async () => {
    try {
      await api("/api/availability", { method: "PUT", body: { availability: availability.value } });
      say(t().saved);
    } catch (err) {
      say(t().failed(err.message));
    }
  });
  document.getElementById("language").addEventListener("change", (event) => {
    lang = event.target.value;
    localStorage.setItem("samenop-lang", lang);
    labels();
    route();
  });
  window.addEventListener("hashchange", () => {
    route().then(() => document.getElementById("main").focus());
  });
  listen();
  // Time left until respond-by moves on without an event: the inbox is
  // drawn again each minute.
  setInterval(() => {
    if (!currentConsult() && location.hash !== "#/consults") route();
  }, 60000);
  await route();
}

start();
