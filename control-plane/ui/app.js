// Latch admin UI: rules, active locks and activity, all through /api/v1 with the admin's cookie.
// No framework and no build step: the DOM is in index.html and this module fills it in.

const body = document.body;
const $ = (selector, root = document) => root.querySelector(selector);
const API = "/api/v1";

// ---------------------------------------------------------------- helpers

/** Calls the API. Resolves to {status, data, etag}; a problem+json body is `data` too. */
async function api(method, path, { json, etag } = {}) {
  const headers = { Accept: "application/json" };
  if (json !== undefined) headers["Content-Type"] = "application/json";
  if (etag) headers["If-Match"] = `"${etag}"`;
  let response;
  try {
    response = await fetch(API + path, {
      method,
      headers,
      credentials: "same-origin",
      body: json === undefined ? undefined : JSON.stringify(json),
    });
  } catch (err) {
    return { status: 0, data: { detail: `The control plane did not answer (${err.message}).` } };
  }
  let data = null;
  const text = await response.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = { detail: text }; }
  }
  if (response.status === 401) showSignIn("Your sign-in has expired or is missing.");
  return { status: response.status, data, etag: unquote(response.headers.get("ETag")) };
}

const unquote = (tag) => (tag ? tag.replace(/^W\//, "").replace(/^"|"$/g, "") : null);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

let toastTimer;
function toast(message) {
  const box = $("#toast");
  box.textContent = message;
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.hidden = true; }, 5000);
}

const problem = (res) => (res.data && (res.data.detail || res.data.title)) || `HTTP ${res.status}`;
const time = (ms) => new Date(ms).toLocaleString();
const debounce = (fn, wait) => {
  let timer;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), wait); };
};

// ---------------------------------------------------------------- sign-in

function showSignIn(reason) {
  $("#app").hidden = true;
  $("#tabs").hidden = true;
  $("#signin").hidden = false;
  $("#signin-reason").textContent = reason || "";
  const demo = body.dataset.demo;
  if (demo) {
    $("#demo-signin").hidden = false;
    $("#demo-link").href = demo;
  }
}

$("#token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("#token").value.trim();
  if (!token) return;
  const secure = location.protocol === "https:" ? "; Secure" : "";
  document.cookie = `${body.dataset.cookie}=${encodeURIComponent(token)}; Path=/; SameSite=Strict${secure}`;
  location.reload();
});

// ---------------------------------------------------------------- tabs

const views = ["rules", "locks", "activity"];
function showTab() {
  const current = views.includes(location.hash.slice(1)) ? location.hash.slice(1) : "rules";
  for (const view of views) {
    $(`#view-${view}`).hidden = view !== current;
    $(`nav a[data-tab="${view}"]`).classList.toggle("active", view === current);
  }
}
window.addEventListener("hashchange", showTab);

// ---------------------------------------------------------------- rules

const editor = $("#rule-editor");
let rules = [];
/** The rule being edited: null for a new one, else {id, etag}. */
let editing = null;

async function loadRules() {
  const res = await api("GET", "/rules");
  if (res.status !== 200) { toast(problem(res)); return; }
  rules = res.data.rules;
  const tbody = $("#rules-table tbody");
  tbody.replaceChildren(...rules.map(ruleRow));
  $("#rules-empty").hidden = rules.length > 0;
}

function ruleRow(rule) {
  const toggle = el("input", {
    type: "checkbox", checked: rule.enabled, "aria-label": `Enable ${rule.id}`,
    onchange: () => setEnabled(rule, toggle.checked),
  });
  return el("tr", { class: rule.enabled ? "" : "disabled", "data-id": rule.id },
    el("td", {}, el("code", {}, rule.id)),
    el("td", {}, el("code", {}, rule.pattern)),
    el("td", {}, el("code", {}, rule.resource || "(id + captures)")),
    el("td", {}, rule.mode),
    el("td", {}, rule.priority),
    el("td", {}, toggle),
    el("td", {},
      el("button", { type: "button", class: "secondary edit", onclick: () => openEditor(rule) }, "Edit"), " ",
      el("button", { type: "button", class: "danger delete", onclick: () => deleteRule(rule) }, "Delete")));
}

async function setEnabled(rule, enabled) {
  const { etag, ...fields } = rule;
  const res = await api("PUT", `/rules/${encodeURIComponent(rule.id)}`, { json: { ...fields, enabled }, etag });
  if (res.status === 412) toast(`Someone else changed rule ${rule.id}; the list was reloaded. Try again.`);
  else if (res.status !== 200) toast(problem(res));
  else toast(`Rule ${rule.id} ${enabled ? "enabled" : "disabled"}.`);
  loadRules();
}

async function deleteRule(rule) {
  if (!confirm(`Delete rule "${rule.id}"? Proxies stop enforcing it within a few seconds.`)) return;
  const res = await api("DELETE", `/rules/${encodeURIComponent(rule.id)}`, { etag: rule.etag });
  if (res.status === 204) toast(`Rule ${rule.id} deleted.`);
  else if (res.status === 412) toast(`Someone else changed rule ${rule.id} meanwhile; look at it again before deleting.`);
  else toast(problem(res));
  loadRules();
}

const listText = (value) => (Array.isArray(value) ? value.join(", ") : "");

function openEditor(rule) {
  editing = rule ? { id: rule.id, etag: rule.etag } : null;
  $("#editor-title").textContent = rule ? `Edit rule ${rule.id}` : "New rule";
  $("#editor-message").hidden = true;
  const f = editor.elements;
  const r = rule || { id: "", pattern: "", mode: "block", owner: "user", websocket: "lock", takeover_roles: ["admin"], priority: 0, inject: true, case_insensitive: false, enabled: true };
  f.id.value = r.id;
  f.id.readOnly = Boolean(rule);
  f.pattern.value = r.pattern;
  f.resource.value = r.resource || "";
  f.methods.value = listText(r.methods);
  f.mode.value = r.mode;
  f.redirect_to.value = r.redirect_to || "";
  f.owner.value = r.owner;
  f.websocket.value = r.websocket || "lock";
  f.lease_seconds.value = r.lease_seconds ?? "";
  f.grace_seconds.value = r.grace_seconds ?? "";
  f.max_per_user.value = r.max_per_user ?? "";
  f.takeover_roles.value = listText(r.takeover_roles);
  f.priority.value = r.priority;
  f.inject.checked = r.inject;
  f.case_insensitive.checked = r.case_insensitive;
  f.enabled.checked = r.enabled;
  showErrors([]);
  editor.hidden = false;
  (rule ? f.pattern : f.id).focus();
  validateNow();
}

/** The form as a rule. Text that is not a number is sent as text, so the server names the field. */
function formRule() {
  const f = editor.elements;
  const text = (name) => f[name].value.trim();
  const optional = (name) => text(name) || null;
  const list = (name) => text(name) ? text(name).split(",").map((s) => s.trim()).filter(Boolean) : null;
  const number = (name) => {
    const value = text(name);
    if (!value) return null;
    return /^-?\d+$/.test(value) ? Number(value) : value;
  };
  return {
    id: text("id"),
    pattern: f.pattern.value,
    resource: optional("resource"),
    methods: list("methods"),
    mode: f.mode.value,
    redirect_to: optional("redirect_to"),
    owner: f.owner.value,
    websocket: f.websocket.value,
    lease_seconds: number("lease_seconds"),
    grace_seconds: number("grace_seconds"),
    max_per_user: number("max_per_user"),
    takeover_roles: list("takeover_roles") || [],
    priority: number("priority") ?? 0,
    inject: f.inject.checked,
    case_insensitive: f.case_insensitive.checked,
    enabled: f.enabled.checked,
  };
}

function showErrors(errors) {
  const byField = new Map();
  for (const { field, message } of errors) {
    byField.set(field, [...(byField.get(field) || []), message]);
  }
  for (const slot of editor.querySelectorAll(".error[data-for]")) {
    const field = slot.dataset.for;
    const known = field === "" || editor.elements[field];
    let messages = byField.get(field) || [];
    if (field === "") {
      // Problems without a field of their own, or with a field the form does not show.
      for (const [other, list] of byField) {
        if (other !== "" && !editor.elements[other]) messages = messages.concat(list.map((m) => `${other}: ${m}`));
      }
    }
    slot.textContent = known ? messages.join(" ") : "";
    const input = field && editor.elements[field];
    if (input && input.setAttribute) input.setAttribute("aria-invalid", messages.length ? "true" : "false");
  }
  $("#validity").textContent = errors.length ? `${errors.length} problem(s)` : "Valid";
}

let validation = 0;
async function validateNow() {
  const mine = ++validation;
  const res = await api("POST", "/rules/validate", { json: formRule() });
  if (mine !== validation) return; // a later keystroke already asked again
  if (res.status === 200) showErrors(res.data.errors);
}
const validateSoon = debounce(validateNow, 200);
editor.addEventListener("input", validateSoon);
editor.addEventListener("change", validateSoon);

editor.addEventListener("submit", async (event) => {
  event.preventDefault();
  const rule = formRule();
  const res = editing
    ? await api("PUT", `/rules/${encodeURIComponent(editing.id)}`, { json: rule, etag: editing.etag })
    : await api("POST", "/rules", { json: rule });
  const message = $("#editor-message");
  if (res.status === 200 || res.status === 201) {
    editor.hidden = true;
    toast(`Rule ${rule.id} saved. Proxies pick it up within a few seconds.`);
    loadRules();
    return;
  }
  message.hidden = false;
  if (res.status === 412) {
    message.textContent = `Someone else changed rule ${editing.id} after you opened it. Your changes were not saved. ` +
      "Copy what you need, then reopen the rule from the list to see their version.";
  } else if (res.status === 422) {
    message.textContent = "The rule was not saved: fix the fields marked below.";
    showErrors(res.data.errors || []);
  } else {
    message.textContent = problem(res);
  }
});

$("#cancel-edit").addEventListener("click", () => { editor.hidden = true; });
$("#new-rule").addEventListener("click", () => openEditor(null));

$("#match-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const out = $("#match-result");
  const res = await api("POST", "/match", { json: { method: $("#match-method").value, path: $("#match-path").value.trim() } });
  out.className = "";
  if (res.status !== 200) {
    out.className = "bad";
    out.textContent = problem(res);
  } else if (res.data.reserved) {
    out.className = "none";
    out.textContent = `${res.data.method} ${res.data.normalized_path}: the proxy's own endpoint; no rule applies.`;
  } else if (!res.data.matched) {
    out.className = "none";
    const why = res.data.method === "OPTIONS" ? "OPTIONS requests pass unclaimed" : "no rule matches";
    out.textContent = `${res.data.method} ${res.data.normalized_path}: ${why}; the request passes through.`;
  } else {
    const redirect = res.data.redirect_to ? `, redirects to ${res.data.redirect_to}` : "";
    out.textContent = `${res.data.method} ${res.data.normalized_path}: rule ${res.data.rule.id} (${res.data.rule.mode}${redirect}), resource ${res.data.resource}`;
  }
});

// ---------------------------------------------------------------- active locks

const EXPIRES_COLUMN = 4;

function lockRow(lock) {
  return el("tr", { "data-resource": lock.resource, "data-key": lockKey(lock) },
    el("td", {}, el("code", {}, lock.resource)),
    el("td", {}, `${lock.holder.name} (${lock.holder.id})`),
    el("td", {}, lock.rule),
    el("td", {}, time(lock.since_ms)),
    el("td", {}, time(lock.expires_ms)),
    el("td", {}, lock.instance),
    el("td", {}, el("button", { type: "button", class: "danger force-release", onclick: () => forceRelease(lock) }, "Force release")));
}

/** What a row shows, but the expiry: renewals move that, and it is updated in place. */
const lockKey = (lock) => JSON.stringify({ ...lock, expires: undefined, expires_ms: undefined });

/** Refreshed every second, so rows are kept rather than rebuilt: a row rebuilt between the
 *  press and the release of a mouse button would lose the click. */
async function loadLocks() {
  const res = await api("GET", "/locks");
  if (res.status !== 200) return;
  const tbody = $("#locks-table tbody");
  const shown = new Map([...tbody.rows].map((row) => [row.dataset.key, row]));
  const rows = res.data.locks.map((lock) => {
    const row = shown.get(lockKey(lock)) || lockRow(lock);
    const expires = time(lock.expires_ms);
    if (row.cells[EXPIRES_COLUMN].textContent !== expires) row.cells[EXPIRES_COLUMN].textContent = expires;
    return row;
  });
  if (rows.length !== tbody.rows.length || rows.some((row, i) => tbody.rows[i] !== row)) {
    tbody.replaceChildren(...rows);
  }
  $("#locks-empty").hidden = rows.length > 0;
}

async function forceRelease(lock) {
  if (!confirm(`Release ${lock.resource}, held by ${lock.holder.name}? Their open page is told and can no longer save.`)) return;
  const res = await api("DELETE", `/locks/${encodeURIComponent(lock.resource)}`);
  toast(res.status === 200 ? `${lock.resource} released.` : problem(res));
  loadLocks();
}

// ---------------------------------------------------------------- activity

const filters = $("#event-filters");
let oldest = null;

function filterValues() {
  const values = {};
  for (const name of ["resource", "user", "kind"]) {
    const value = filters.elements[name].value.trim();
    if (value) values[name] = value;
  }
  return values;
}

function describe(event) {
  const who = event.user ? ` by ${event.user}` : "";
  const what = event.resource ? ` ${event.resource}` : event.rule ? ` rule ${event.rule}` : "";
  const parts = [];
  if (event.holder) parts.push(`holder ${event.holder.name}`);
  if (event.previous_holder) parts.push(`was ${event.previous_holder.name}`);
  if (event.reason) parts.push(event.reason);
  if (event.instance) parts.push(`on ${event.instance}`);
  return el("li", { "data-id": event.id, "data-kind": event.kind },
    el("time", { datetime: new Date(event.at).toISOString() }, time(event.at)),
    el("span", { class: "kind" }, event.kind.replace(/_/g, " ")),
    `${what}${who}`, parts.length ? el("span", { class: "muted" }, ` (${parts.join(", ")})`) : null);
}

async function loadEvents(more = false) {
  const query = new URLSearchParams({ ...filterValues(), limit: "100" });
  if (more && oldest) query.set("before", oldest);
  const res = await api("GET", `/events?${query}`);
  if (res.status !== 200) { toast(problem(res)); return; }
  const items = res.data.events.map(describe);
  if (more) $("#events").append(...items); else $("#events").replaceChildren(...items);
  oldest = res.data.next;
  $("#older").hidden = !oldest;
}

let stream;
function openStream() {
  if (stream) stream.close();
  const query = new URLSearchParams(filterValues());
  stream = new EventSource(`${API}/events/stream?${query}`);
  stream.addEventListener("open", () => { $("#stream-state").textContent = "live"; });
  stream.addEventListener("error", () => { $("#stream-state").textContent = "reconnecting…"; });
  stream.addEventListener("audit", (message) => {
    const event = JSON.parse(message.data);
    if (document.querySelector(`#events li[data-id="${CSS.escape(event.id)}"]`)) return;
    const item = describe(event);
    item.classList.add("fresh");
    $("#events").prepend(item);
    if (event.kind.startsWith("rule_")) loadRules();
    else loadLocks();
  });
  stream.addEventListener("lagged", () => loadEvents());
}

filters.addEventListener("input", debounce(() => { loadEvents(); openStream(); }, 300));
$("#older").addEventListener("click", () => loadEvents(true));

// ---------------------------------------------------------------- start

function start() {
  if (body.dataset.auth !== "ok") {
    showSignIn(body.dataset.reason);
    return;
  }
  $("#who").textContent = `Signed in as ${body.dataset.user}`;
  $("#tabs").hidden = false;
  $("#app").hidden = false;
  showTab();
  loadRules();
  loadLocks();
  loadEvents();
  openStream();
  // Locks change on every proxy; the stream covers this process's events, polling covers the rest.
  setInterval(() => { if (!document.hidden) loadLocks(); }, 1000);
}

start();
