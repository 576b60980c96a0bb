// The inbox page: asks the local samenop process (same origin, session
// cookie, CSRF token on changes) and redraws what its event stream says
// changed. No framework: the DOM is built with createElement, never from
// HTML strings, so no text from the service is ever parsed as markup.

import { strings, expertise } from "./strings.js";

let lang = localStorage.getItem("samenop-lang") || "nl";
// What is being typed, per consult: a redraw (an event arrived) keeps it.
const drafts = new Map();
let csrf = "";
let me = null;
const t = () => strings[lang];

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
  return el("span", { class: `urgency urgency-${urgency}` }, t().urgency[urgency] || urgency);
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
                el("a", { href: `#/consult/${c.id}` }, expertise[lang][c.expertise] || c.expertise),
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
    el("p", { class: "from" }, `${t().from} ${c.asking_organisation_oin || ""}`),
  ]);
}

async function showConsults(main) {
  const { consults } = await api("/api/consults");
  cards(main, t().consultsTitle, t().consultsEmpty, consults, "consults", (c) => [
    el("p", { class: "meta" }, urgencyBadge(c.urgency), " ", t().states[c.state] || c.state),
    el("p", { class: "question" }, c.question),
  ]);
}

function basisText(c) {
  const basis = c.legal_basis;
  if (!basis) return t().grounds.none;
  return basis.ground === "consent" ? t().grounds.consent : t().grounds.other;
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
  const facts = el(
    "dl",
    { class: "facts" },
    el("dt", {}, s.state),
    el("dd", { id: "consult-state" }, s.states[c.state] || c.state),
    el("dt", {}, s.question),
    el("dd", {}, c.question),
    el("dt", {}, s.basis),
    el("dd", {}, basisText(c)),
    el("dt", {}, s.participants),
    el("dd", {}, String(c.participants.filter((p) => p.status === "active").length)),
    el("dt", {}, s.askedBy),
    el("dd", {}, c.asking_organisation_oin || ""),
  );
  const parts = [
    el("h1", {}, expertise[lang][c.expertise] || c.expertise, " ", urgencyBadge(c.urgency)),
    facts,
    dueLine(c),
  ];
  if (c.state === "requested" && !c.own) {
    // A request has no thread yet: what to do is accept or decline.
    parts.push(requestActions(c));
    main.replaceChildren(...parts.filter(Boolean));
    return;
  }
  parts.push(el("h2", {}, s.thread));
  if (!data.joined && c.state === "accepted") parts.push(el("p", { class: "notice" }, s.notJoined));
  if (!data.readable) parts.push(el("p", { class: "notice" }, s.unreadable));
  parts.push(
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
  parts.push(composer(c, data.joined));
  if (c.state === "accepted" && !c.own) {
    parts.push(
      el(
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
      ),
    );
  }
  main.replaceChildren(...parts.filter(Boolean));
}

function requestActions(c) {
  const s = t();
  const reason = el(
    "select",
    { id: "decline-reason", name: "reason" },
    Object.entries(s.reasons).map(([value, label]) => el("option", { value }, label)),
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

function composer(c, joined) {
  const s = t();
  const blocked = c.state !== "accepted" ? s.noPosts[c.state] : !joined ? s.notJoined : null;
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
              bar.value = done;
            });
          } else {
            await api(`/api/consults/${c.id}/messages`, { method: "POST", body: { text: text.value } });
          }
          drafts.delete(c.id);
          text.value = "";
          say(s.sent);
          await route();
          document.getElementById("compose")?.focus();
        } catch (err) {
          say(s.failed(err.message));
          button.disabled = false;
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
  await route();
}

start();
