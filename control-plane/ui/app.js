// Latch admin UI: rules, active locks, activity and traffic, all through /api/v1 with the
// admin's cookie.
// No framework and no build step: the DOM is in index.html and this module fills it in.

const body = document.body;
const $ = (selector, root = document) => root.querySelector(selector);
const API = "/api/v1";

// ---------------------------------------------------------------- helpers

/** Calls the API. Resolves to {status, data, etag, date}; a problem+json body is `data` too. */
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
  return {
    status: response.status,
    data,
    etag: unquote(response.headers.get("ETag")),
    date: response.headers.get("Date"),
  };
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

/** A path or key as code that may wrap after each `/` or `:` rather than anywhere. */
const code = (text) => {
  const parts = String(text).split(/(?<=[/:])/);
  return el("code", {}, parts.flatMap((part, i) => (i ? [el("wbr"), part] : [part])));
};

const problem = (res) => (res.data && (res.data.detail || res.data.title)) || `HTTP ${res.status}`;
const time = (ms) => new Date(ms).toLocaleString();
/** Orders text the way people count: `doc:2` before `doc:10`. */
const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });
/** Whether any of `fields` contains `needle` (already lower case). */
const mentions = (needle, ...fields) =>
  fields.some((field) => field !== null && field !== undefined && String(field).toLowerCase().includes(needle));
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

const views = ["rules", "locks", "activity", "traffic"];
const currentTab = () => (views.includes(location.hash.slice(1)) ? location.hash.slice(1) : "rules");
function showTab() {
  const current = currentTab();
  for (const view of views) {
    $(`#view-${view}`).hidden = view !== current;
    $(`nav a[data-tab="${view}"]`).classList.toggle("active", view === current);
  }
  if (current === "traffic") loadShapes();
}
window.addEventListener("hashchange", showTab);

// ---------------------------------------------------------------- rules

const dialog = $("#rule-dialog");
const editor = $("#rule-editor");
let rules = [];
/** The rule being edited: null for a new one, else {id, etag}. */
let editing = null;
/** How the table is sorted: {column, direction} (1 up, -1 down), or null for the store's order. */
let ruleSort = null;

/** What each sortable column sorts by. */
const RULE_COLUMNS = {
  id: (rule) => rule.id,
  pattern: (rule) => rule.pattern,
  resource: (rule) => rule.resource || "",
  app: (rule) => rule.app || "",
  mode: (rule) => rule.mode,
  priority: (rule) => rule.priority,
  enabled: (rule) => (rule.enabled ? 1 : 0),
};

function compareRules(column) {
  const key = RULE_COLUMNS[column];
  return (a, b) => {
    const x = key(a);
    const y = key(b);
    return typeof x === "number" && typeof y === "number" ? x - y : collator.compare(String(x), String(y));
  };
}

/** The `[[app]]` entries of the config; empty with a single app, which hides every app field. */
let apps = [];

async function loadApps() {
  const res = await api("GET", "/apps");
  if (res.status !== 200) return;
  apps = res.data.apps;
  const several = apps.length > 0;
  $("#app-field").hidden = !several;
  $("#match-host").hidden = !several;
  for (const th of document.querySelectorAll("th.app-column")) th.hidden = !several;
  $("#app-names").replaceChildren(...apps.map((app) => el("option", { value: app.name }, app.hosts.join(", "))));
  if (several) $("#match-host").placeholder = apps[0].hosts[0] || "host";
  // The rules may have been drawn before the apps were known.
  if (several) renderRules();
}

async function loadRules() {
  const res = await api("GET", "/rules");
  if (res.status !== 200) { toast(problem(res)); return; }
  rules = res.data.rules;
  renderRules();
}

/** The table from `rules`, filtered and sorted as the admin asked. */
function renderRules() {
  const needle = $("#rules-filter").value.trim().toLowerCase();
  let shown = rules.filter((rule) => !needle || mentions(needle, rule.id, rule.pattern, rule.resource, rule.app));
  if (ruleSort) {
    const compare = compareRules(ruleSort.column);
    shown = [...shown].sort((a, b) => compare(a, b) * ruleSort.direction || collator.compare(a.id, b.id));
  }
  $("#rules-table tbody").replaceChildren(...shown.map(ruleRow));
  $("#rules-empty").hidden = rules.length > 0;
  $("#rules-none-match").hidden = rules.length === 0 || shown.length > 0;
  $("#rules-count").textContent = needle ? `${shown.length} of ${rules.length}` : "";
  for (const th of document.querySelectorAll("#rules-table th[data-sort]")) {
    if (ruleSort && th.dataset.sort === ruleSort.column) {
      th.setAttribute("aria-sort", ruleSort.direction > 0 ? "ascending" : "descending");
    } else {
      th.removeAttribute("aria-sort");
    }
  }
}

$("#rules-table thead").addEventListener("click", (event) => {
  const th = event.target.closest("th[data-sort]");
  if (!th) return;
  const column = th.dataset.sort;
  ruleSort = ruleSort && ruleSort.column === column
    ? { column, direction: -ruleSort.direction }
    : { column, direction: 1 };
  renderRules();
});
// "change" too: a field cleared by a script or the browser's own clear button may fire no "input".
for (const type of ["input", "change"]) $("#rules-filter").addEventListener(type, renderRules);

function ruleRow(rule) {
  const toggle = el("input", {
    type: "checkbox", checked: rule.enabled, "aria-label": `Enable ${rule.id}`,
    onchange: () => setEnabled(rule, toggle.checked),
  });
  return el("tr", { class: rule.enabled ? "" : "disabled", "data-id": rule.id },
    el("td", {}, el("code", {}, rule.id)),
    el("td", {}, code(rule.pattern)),
    el("td", {}, code(rule.resource || "(id + captures)")),
    el("td", {}, rule.mode),
    el("td", {}, rule.priority),
    el("td", {}, toggle),
    el("td", { class: "app-column", hidden: apps.length === 0 }, apps.length ? rule.app || "every app" : ""),
    el("td", { class: "actions-cell" },
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

const NEW_RULE = {
  id: "", pattern: "", mode: "block", owner: "user", websocket: "lock", takeover_roles: ["admin"],
  priority: 0, inject: true, case_insensitive: false, enabled: true,
};

/** The other paths of the suggested rule's object (`related` of a shape), each offered as a
 *  rule of its own for the same resource; empty unless the editor was opened from a shape. */
let relatedOffered = [];

function showRelated(related) {
  relatedOffered = related;
  $("#related").hidden = related.length === 0;
  $("#related-list").replaceChildren(...related.map((r, i) => el("li", {},
    el("label", {},
      el("input", { type: "checkbox", name: "related", value: String(i), "data-shape": r.shape, checked: r.writes && !ruleFor(r.pattern) }),
      el("span", {}, code(`${r.methods.join(", ")} ${r.shape}`),
        r.writes ? " (writes)" : "",
        ruleFor(r.pattern) ? ` (rule ${ruleFor(r.pattern).id} has this pattern)` : "")))));
}

const ruleFor = (pattern) => rules.find((rule) => rule.pattern === pattern);

/** A rule id for a related path: the main rule's id and the path's words after the object's
 *  id (`pages` and `/admin/pages/{int}/lock/` give `pages-lock`), unique among `taken`. */
function relatedId(base, shape, taken) {
  const after = shape.split("/").slice(1);
  const first = after.findIndex((segment) => /^\{[a-z]+\}$/.test(segment));
  const words = after.slice(first + 1).join("-").toLowerCase()
    .replace(/[^a-z0-9_-]+/g, "-").replace(/-+/g, "-").replace(/^-+|-+$/g, "");
  const stem = `${base}-${words || "object"}`.slice(0, 60).replace(/-+$/, "");
  let id = stem;
  for (let n = 2; taken.has(id); n += 1) id = `${stem}-${n}`;
  taken.add(id);
  return id;
}

/** A rule for each related path ticked, like `rule` but for that path and every method,
 *  with the path's shape. */
function relatedRules(rule) {
  const chosen = [...editor.querySelectorAll("input[name=related]:checked")]
    .map((box) => relatedOffered[Number(box.value)]);
  const taken = new Set([...rules.map((r) => r.id), rule.id]);
  return chosen.map((related) => ({
    shape: related.shape,
    rule: { ...rule, id: relatedId(rule.id, related.shape, taken), pattern: related.pattern, methods: null },
  }));
}

/** Creates the rules of `relatedRules(rule)`. Resolves to the ids created and the failures,
 *  as text. */
async function createRelated(rule) {
  const created = [];
  const failed = [];
  for (const related of relatedRules(rule)) {
    const res = await api("POST", "/rules", { json: related.rule });
    if (res.status === 201) created.push(related.rule.id);
    else failed.push(`${related.shape}: ${problem(res)}`);
  }
  return { created, failed };
}

/** The preview: the recent sampled requests the form's rule (and the related paths ticked)
 *  would match, and how each user would have been treated, replayed by the control plane. */
const TREATMENTS = {
  claimed: "takes the lock", renewed: "holds it", read_only: "read-only", redirected: "303 redirect",
  locked: "423 Locked", sign_in: "asked to sign in", preflight: "preflight, passes",
};
let previewing = 0;
async function previewNow() {
  const mine = ++previewing;
  const rule = formRule();
  const res = await api("POST", "/rules/preview", { json: [rule, ...relatedRules(rule).map((r) => r.rule)] });
  if (mine !== previewing) return; // the form changed since
  const state = $("#preview-state");
  const users = $("#preview-users");
  const table = $("#preview-requests");
  if (res.status !== 200) {
    state.textContent = res.status === 422 ? "Fix the rule to see what it would have done." : problem(res);
    users.replaceChildren();
    table.hidden = true;
    return;
  }
  const p = res.data;
  state.textContent = p.matched
    ? `${p.matched} of the ${p.sampled} sampled requests of the last 15 minutes match.`
    : `None of the ${p.sampled} sampled requests of the last 15 minutes match.`;
  users.replaceChildren(...p.users.map((u) => el("li", { "data-user": u.user ?? "" }, u.summary)));
  table.hidden = p.requests.length === 0;
  table.tBodies[0].replaceChildren(...p.requests.slice().reverse().map((r) => el("tr", {},
    el("td", { class: "expires" }, new Date(r.at).toLocaleTimeString()),
    el("td", {}, r.user ?? "—"),
    el("td", {}, code(`${r.method} ${r.path}`)),
    el("td", {}, code(r.resource)),
    el("td", { "data-treatment": r.treatment }, TREATMENTS[r.treatment] || r.treatment,
      r.holder && r.holder !== r.user ? ` (${r.holder} holds it)` : ""))));
}
const previewSoon = debounce(previewNow, 400);

/** Opens the editor over the page, where the admin is: `rule` to edit one, else a new rule,
 *  with the fields of `draft` filled in (a suggestion from the Traffic view) and `related`
 *  paths of the same object offered for the same resource. */
function openEditor(rule, draft = {}, related = []) {
  editing = rule ? { id: rule.id, etag: rule.etag } : null;
  showRelated(rule ? [] : related);
  $("#editor-title").textContent = rule ? `Edit rule ${rule.id}` : "New rule";
  $("#editor-message").hidden = true;
  const f = editor.elements;
  const r = rule || { ...NEW_RULE, ...draft };
  f.id.value = r.id;
  f.id.readOnly = Boolean(rule);
  f.pattern.value = r.pattern;
  f.resource.value = r.resource || "";
  f.methods.value = listText(r.methods);
  f.mode.value = r.mode;
  f.redirect_to.value = r.redirect_to || "";
  f.owner.value = r.owner;
  f.websocket.value = r.websocket || "lock";
  f.app.value = r.app || "";
  f.lease_seconds.value = r.lease_seconds ?? "";
  f.grace_seconds.value = r.grace_seconds ?? "";
  f.max_per_user.value = r.max_per_user ?? "";
  f.takeover_roles.value = listText(r.takeover_roles);
  f.priority.value = r.priority;
  f.inject.checked = r.inject;
  f.case_insensitive.checked = r.case_insensitive;
  f.enabled.checked = r.enabled;
  showErrors([]);
  if (!dialog.open) dialog.showModal();
  (rule ? f.pattern : f.id).focus();
  validateNow();
  previewNow();
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
    app: optional("app"),
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
editor.addEventListener("input", previewSoon);
editor.addEventListener("change", previewSoon);

editor.addEventListener("submit", async (event) => {
  event.preventDefault();
  const rule = formRule();
  const res = editing
    ? await api("PUT", `/rules/${encodeURIComponent(editing.id)}`, { json: rule, etag: editing.etag })
    : await api("POST", "/rules", { json: rule });
  const message = $("#editor-message");
  if (res.status === 200 || res.status === 201) {
    const { created, failed } = editing ? { created: [], failed: [] } : await createRelated(rule);
    loadRules();
    if (failed.length) {
      // The rule itself is stored: saving again updates it.
      editing = { id: rule.id, etag: res.etag };
      $("#editor-title").textContent = `Edit rule ${rule.id}`;
      editor.elements.id.readOnly = true;
      showRelated([]);
      message.hidden = false;
      message.textContent = `Rule ${rule.id} saved${created.length ? `, and ${created.join(", ")}` : ""}; ` +
        `not saved: ${failed.join("; ")}`;
      return;
    }
    dialog.close();
    const also = created.length ? ` with ${created.join(", ")} for the same resource` : "";
    toast(`Rule ${rule.id} saved${also}. Proxies pick it up within a few seconds.`);
    return;
  }
  message.hidden = false;
  if (res.status === 412) {
    message.textContent = `Someone else changed rule ${editing.id} after you opened it. Your changes were not saved. ` +
      "Copy what you need, then cancel and reopen the rule from the list to see their version.";
  } else if (res.status === 422) {
    message.textContent = "The rule was not saved: fix the fields marked below.";
    showErrors(res.data.errors || []);
  } else {
    message.textContent = problem(res);
  }
});

$("#cancel-edit").addEventListener("click", () => dialog.close());
$("#new-rule").addEventListener("click", () => openEditor(null));

$("#match-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const out = $("#match-result");
  const host = $("#match-host").value.trim();
  const user = $("#match-user").value.trim();
  const res = await api("POST", "/match", { json: { method: $("#match-method").value, path: $("#match-path").value.trim(), host: host || null, user: user || null } });
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
    const app = res.data.app ? `app ${res.data.app}, ` : "";
    const now = res.data.treatment ? `. For ${user} now: ${TREATMENTS[res.data.treatment] || res.data.treatment}${res.data.holder && res.data.holder !== user ? ` (${res.data.holder} holds it)` : ""}` : "";
    out.textContent = `${res.data.method} ${res.data.normalized_path}: ${app}rule ${res.data.rule.id} (${res.data.rule.mode}${redirect}), resource ${res.data.resource}${now}`;
  }
});

// ---------------------------------------------------------------- active locks

const EXPIRES_COLUMN = 4;
/** The last list, in natural order of resource. */
let locks = [];
/** The control plane's clock minus ours, when they differ by more than the `Date` header's one
 *  second of resolution; the countdown reads the server's expiry against it. */
let clockSkew = 0;

function lockRow(lock) {
  const holder = `${lock.holder.name} (${lock.holder.id})`;
  return el("tr", {
    "data-resource": lock.resource,
    "data-key": lockKey(lock),
    "data-search": `${lock.resource}\n${holder}`.toLowerCase(),
  },
  el("td", {}, code(lock.resource)),
  el("td", {}, holder),
  el("td", {}, lock.rule),
  el("td", {}, time(lock.since_ms)),
  el("td", { class: "expires" }),
  el("td", {}, lock.instance),
  el("td", { class: "app-column", hidden: apps.length === 0 }, lock.app || ""),
  el("td", { class: "actions-cell" },
    el("button", { type: "button", class: "danger force-release", onclick: () => forceRelease(lock) }, "Force release")));
}

/** What a row shows, but the expiry: renewals move that, and it is updated in place. */
const lockKey = (lock) => JSON.stringify({ ...lock, expires: undefined, expires_ms: undefined });

/** What is left of a lease, in whole seconds: "in 42 s", "in 2 min 05 s". */
function remaining(expiresMs) {
  const seconds = Math.ceil((expiresMs - (Date.now() + clockSkew)) / 1000);
  if (seconds <= 0) return "expiring";
  if (seconds < 60) return `in ${seconds} s`;
  return `in ${Math.floor(seconds / 60)} min ${String(seconds % 60).padStart(2, "0")} s`;
}

/** Counts every shown lease down; runs every second, whether or not the list was fetched. */
function tickLocks() {
  for (const row of $("#locks-table tbody").rows) {
    const text = remaining(Number(row.dataset.expires));
    const cell = row.cells[EXPIRES_COLUMN];
    if (cell.textContent !== text) cell.textContent = text;
  }
}

/** Refreshed every second, so rows are kept rather than rebuilt: a row rebuilt between the
 *  press and the release of a mouse button would lose the click. */
async function loadLocks() {
  const res = await api("GET", "/locks");
  if (res.status !== 200) return;
  const serverNow = Date.parse(res.date || "");
  if (Number.isFinite(serverNow)) {
    const skew = serverNow - Date.now();
    clockSkew = Math.abs(skew) > 2000 ? skew : 0;
  }
  locks = [...res.data.locks].sort((a, b) => collator.compare(a.resource, b.resource));
  const tbody = $("#locks-table tbody");
  const shown = new Map([...tbody.rows].map((row) => [row.dataset.key, row]));
  const rows = locks.map((lock) => {
    const row = shown.get(lockKey(lock)) || lockRow(lock);
    const expires = String(lock.expires_ms);
    if (row.dataset.expires !== expires) {
      row.dataset.expires = expires;
      row.cells[EXPIRES_COLUMN].title = time(lock.expires_ms);
    }
    return row;
  });
  if (rows.length !== tbody.rows.length || rows.some((row, i) => tbody.rows[i] !== row)) {
    tbody.replaceChildren(...rows);
  }
  tickLocks();
  filterLocks();
  updateBulk();
}

/** Hides the rows whose resource and holder do not contain the filter's text. */
function filterLocks() {
  const needle = $("#locks-filter").value.trim().toLowerCase();
  let visible = 0;
  for (const row of $("#locks-table tbody").rows) {
    row.hidden = Boolean(needle) && !row.dataset.search.includes(needle);
    if (!row.hidden) visible += 1;
  }
  $("#locks-empty").hidden = locks.length > 0;
  $("#locks-none-match").hidden = locks.length === 0 || visible > 0;
}
for (const type of ["input", "change"]) $("#locks-filter").addEventListener(type, filterLocks);

/** The holders to pick from for a bulk release, each with how many locks they hold. */
function updateBulk() {
  const select = $("#bulk-holder");
  const holders = new Map();
  for (const lock of locks) {
    const entry = holders.get(lock.holder.id) || { holder: lock.holder, count: 0 };
    entry.count += 1;
    holders.set(lock.holder.id, entry);
  }
  const options = [...holders.values()]
    .sort((a, b) => collator.compare(a.holder.name, b.holder.name))
    .map(({ holder, count }) => el("option", { value: holder.id },
      `${holder.name} (${holder.id}): ${count} lock${count === 1 ? "" : "s"}`));
  // Rebuilt only when it changed, so that a list the admin has open is not reset every second.
  const signature = options.map((option) => option.textContent).join("\n");
  if (select.dataset.signature !== signature) {
    const picked = select.value;
    select.replaceChildren(...options);
    select.dataset.signature = signature;
    if (holders.has(picked)) select.value = picked;
  }
  $("#bulk").hidden = holders.size === 0;
  labelBulk();
}

function labelBulk() {
  const mine = locks.filter((lock) => lock.holder.id === $("#bulk-holder").value);
  $("#release-holder").textContent = mine.length
    ? `Release all of ${mine[0].holder.name}'s locks`
    : "Release all";
}
$("#bulk-holder").addEventListener("change", labelBulk);

/** Releases every lock the picked holder holds, after asking, one DELETE each. The list is
 *  read again after the question, and each DELETE carries the lock's ETag, so that a lock
 *  someone else took meanwhile, even a moment before its DELETE, is left alone (412). */
$("#release-holder").addEventListener("click", async () => {
  const id = $("#bulk-holder").value;
  const mine = locks.filter((lock) => lock.holder.id === id);
  if (!mine.length) return;
  const name = mine[0].holder.name;
  const listed = mine.slice(0, 10).map((lock) => lock.resource).join(", ") +
    (mine.length > 10 ? ` and ${mine.length - 10} more` : "");
  const count = mine.length === 1 ? "the lock" : `all ${mine.length} locks`;
  if (!confirm(`Release ${count} held by ${name} (${id}): ${listed}? Their open pages are told and can no longer save.`)) return;
  const fresh = await api("GET", "/locks");
  if (fresh.status !== 200) { toast(problem(fresh)); return; }
  const still = fresh.data.locks.filter((lock) => lock.holder.id === id);
  let released = 0;
  const moved = [];
  const failed = [];
  for (const lock of still) {
    const res = await api("DELETE", `/locks/${encodeURIComponent(lock.resource)}`, { etag: lock.etag });
    if (res.status === 200) released += 1;
    else if (res.status === 412) moved.push(lock.resource);
    else if (res.status !== 404) failed.push(`${lock.resource}: ${problem(res)}`);
  }
  toast(`Released ${released} of ${name}'s locks.` +
    (moved.length ? ` Left alone, as they changed hands meanwhile: ${moved.join(", ")}.` : "") +
    (failed.length ? ` Not released: ${failed.join("; ")}` : ""));
  loadLocks();
});

async function forceRelease(lock) {
  if (!confirm(`Release ${lock.resource}, held by ${lock.holder.name}? Their open page is told and can no longer save.`)) return;
  const res = await api("DELETE", `/locks/${encodeURIComponent(lock.resource)}`, { etag: lock.etag });
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

const fieldValue = (value) => {
  if (value === undefined || value === null) return "(none)";
  return typeof value === "string" ? value : JSON.stringify(value);
};

/** The fields a rule change changed, each as before and after. */
function ruleDiff(detail) {
  if (!detail || typeof detail !== "object") return null;
  const before = detail.before || {};
  const after = detail.after || {};
  const fields = [...new Set([...Object.keys(before), ...Object.keys(after)])];
  const changed = fields.filter((field) => JSON.stringify(before[field] ?? null) !== JSON.stringify(after[field] ?? null));
  if (!changed.length) return null;
  return el("dl", { class: "diff" }, changed.flatMap((field) => [
    el("dt", {}, field),
    el("dd", { "data-field": field },
      el("del", { "aria-label": `${field} was` }, fieldValue(before[field])), " → ",
      el("ins", { "aria-label": `${field} is now` }, fieldValue(after[field]))),
  ]));
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
    `${what}${who}`, parts.length ? el("span", { class: "muted" }, ` (${parts.join(", ")})`) : null,
    event.kind === "rule_updated" ? ruleDiff(event.detail) : null);
}

/** Hides the loaded events whose text does not contain the text filter's. */
function filterEvents() {
  const needle = filters.elements.text.value.trim().toLowerCase();
  const items = [...$("#events").children];
  for (const item of items) item.hidden = Boolean(needle) && !item.textContent.toLowerCase().includes(needle);
  $("#events-none-match").hidden = !needle || items.length === 0 || items.some((item) => !item.hidden);
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
  filterEvents();
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
    filterEvents();
    if (event.kind.startsWith("rule_")) loadRules();
    else loadLocks();
  });
  stream.addEventListener("lagged", () => loadEvents());
}

// The text filter works on the events already shown; the others ask the server again.
const reloadEvents = debounce(() => { loadEvents(); openStream(); }, 300);
for (const type of ["input", "change"]) {
  filters.addEventListener(type, (event) => {
    if (event.target.name === "text") filterEvents();
    else reloadEvents();
  });
}
filters.addEventListener("submit", (event) => event.preventDefault());
$("#older").addEventListener("click", () => loadEvents(true));

// ---------------------------------------------------------------- traffic

const shapesForm = $("#shapes-filter");
const COUNT_COLUMN = 2;

/** A rule id from the noun of a suggested resource (`pages:{id}` gives `pages`), made unique
 *  among the rules there are. */
function ruleIdFor(resource) {
  const noun = resource.split(":")[0].toLowerCase()
    .replace(/[^a-z0-9_-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 56) || "rule";
  const taken = new Set(rules.map((rule) => rule.id));
  if (!taken.has(noun)) return noun;
  let n = 2;
  while (taken.has(`${noun}-${n}`)) n += 1;
  return `${noun}-${n}`;
}

/** Everything a shape's row shows but its count, which changes all the time and is updated in place. */
const shapeKey = (shape) => JSON.stringify([shape.method, shape.shape, shape.kinds, shape.writes, shape.rule, shape.suggestion, shape.related.map((r) => [r.shape, r.methods])]);

function shapeRow(shape) {
  const { pattern, resource } = shape.suggestion;
  return el("tr", { "data-shape": `${shape.method} ${shape.shape}`, "data-key": shapeKey(shape) },
    el("td", {}, shape.method),
    el("td", {}, code(shape.shape)),
    el("td", { class: "count" }),
    el("td", {}, shape.kinds.join(", ")),
    el("td", {}, shape.writes ? "yes" : "no"),
    el("td", { class: "rule" }, shape.rule ? el("code", {}, shape.rule) : el("span", { class: "muted" }, "none")),
    el("td", {}, code(pattern), el("br"), code(resource)),
    el("td", { class: "actions-cell" },
      el("button", {
        type: "button",
        class: shape.rule ? "secondary create-rule" : "create-rule",
        onclick: () => openEditor(null, { id: ruleIdFor(resource), pattern, resource }, shape.related),
      }, "Create rule")));
}

let shapesAsked = 0;
async function loadShapes() {
  const mine = ++shapesAsked;
  const query = new URLSearchParams({ limit: "200" });
  const prefix = shapesForm.elements.prefix.value.trim();
  if (prefix) query.set("prefix", prefix);
  const res = await api("GET", `/shapes?${query}`);
  if (mine !== shapesAsked) return; // the prefix changed meanwhile
  if (res.status !== 200) { $("#shapes-state").textContent = problem(res); return; }
  const tbody = $("#shapes-table tbody");
  const shown = new Map([...tbody.rows].map((row) => [row.dataset.key, row]));
  const rows = res.data.shapes.map((shape) => {
    const row = shown.get(shapeKey(shape)) || shapeRow(shape);
    const count = `≈ ${shape.count}`;
    const cell = row.cells[COUNT_COLUMN];
    if (cell.textContent !== count) cell.textContent = count;
    cell.title = `first seen ${time(shape.first_seen)}, last seen ${time(shape.last_seen)}`;
    return row;
  });
  if (rows.length !== tbody.rows.length || rows.some((row, i) => tbody.rows[i] !== row)) {
    tbody.replaceChildren(...rows);
  }
  $("#shapes-empty").hidden = rows.length > 0;
  const n = res.data.instances;
  $("#shapes-state").textContent = `${n} proxy instance${n === 1 ? "" : "s"}, as of ${new Date().toLocaleTimeString()}`;
}

shapesForm.addEventListener("submit", (event) => { event.preventDefault(); loadShapes(); });
shapesForm.addEventListener("input", debounce(loadShapes, 300));

// ---------------------------------------------------------------- start

function start() {
  if (body.dataset.auth !== "ok") {
    showSignIn(body.dataset.reason);
    return;
  }
  $("#who").textContent = `Signed in as ${body.dataset.user}`;
  if (body.dataset.signout) {
    $("#signout").href = body.dataset.signout;
    $("#signout").hidden = false;
  }
  $("#tabs").hidden = false;
  $("#app").hidden = false;
  showTab();
  loadApps();
  loadRules();
  loadLocks();
  loadEvents();
  openStream();
  // Locks change on every proxy; the stream covers this process's events, polling covers the
  // rest. The countdown ticks whether or not a poll answers.
  setInterval(() => {
    tickLocks();
    if (!document.hidden) loadLocks();
  }, 1000);
  // Proxies publish their shapes every few seconds.
  setInterval(() => { if (!document.hidden && currentTab() === "traffic") loadShapes(); }, 5000);
}

start();
