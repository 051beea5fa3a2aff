/*
 * Latch banner. The proxy adds it to locked pages (and its own 423 page) with
 *   <script src="{prefix}/banner.js" defer data-latch-prefix data-latch-path
 *           data-latch-lease data-latch-page="app|blocked">
 * It watches the page's lock over {prefix}/ws and says who holds it. Everything lives in the
 * open shadow root of <div id="latch-banner" data-state="…">, so the page's CSS and the banner
 * cannot touch each other. Server data is only ever written as text.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  if (!script || document.getElementById("latch-banner")) return;
  // In a frame whose top page (same origin) has a Latch banner, that banner speaks for the
  // page: no second banner, no socket, no release beacon. The top's script tag is parsed
  // before any of its frames load, so it is found even before its banner is drawn.
  if (window.top !== window) {
    try {
      var top = window.top.document;
      if (top.getElementById("latch-banner") || top.querySelector("script[data-latch-prefix]")) return;
    } catch (e) {
      // A cross-origin top: this frame is on its own.
    }
  }

  var config = script.dataset;
  var prefix = (config.latchPrefix || "").replace(/\/+$/, "");
  // The path whose lock this page shows, as the proxy matched it.
  var path = /^\/(?![\/\\])/.test(config.latchPath || "") ? config.latchPath : location.pathname;
  // Where "open" leads: this very address, query included (the 423 page is served at the URL the
  // person asked for), fetched again with GET and without the fragment.
  var here = location.href.split("#")[0];
  var lease = Number(config.latchLease) > 0 ? Number(config.latchLease) : 30;
  var blockedPage = config.latchPage === "blocked";
  var wsUrl = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + prefix + "/ws";
  // This page load's id: tells the proxy which of the person's tabs is leaving.
  var tab = (function () {
    var bytes = new Uint8Array(12);
    (window.crypto || window.msCrypto).getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return (b < 16 ? "0" : "") + b.toString(16); }).join("");
  })();
  // The 423 page reloads itself once when the lock frees; if that reload is refused again it
  // stays put rather than loop. The mark lives for this tab only.
  var reloadKey = "latch-reloaded:" + here;
  var autoReload = true;
  var reloadTimer = 0;
  try {
    if (blockedPage && sessionStorage.getItem(reloadKey)) autoReload = false;
    sessionStorage.removeItem(reloadKey);
  } catch (e) {
    autoReload = false;
  }

  var CSS =
    ":host{all:initial!important;display:block!important;position:fixed!important;z-index:2147483647!important;" +
    "right:16px!important;bottom:16px!important;max-width:min(34rem,calc(100vw - 32px))!important;" +
    "font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif!important;color:#1f2328!important}" +
    "@media print{:host{display:none!important}}" +
    ".bar{display:flex;flex-wrap:wrap;align-items:center;gap:8px 12px;padding:10px 14px;background:#fff;" +
    "border:1px solid #d0d7de;border-left:6px solid var(--accent,#8c959f);border-radius:8px;" +
    "box-shadow:0 4px 18px rgba(0,0,0,.2)}" +
    ":host([data-state=editing]){--accent:#1a7f37}" +
    ":host([data-state=locked]),:host([data-state=other_session]){--accent:#bf8700}" +
    ":host([data-state=free]),:host([data-state=offer]){--accent:#0969da}" +
    ":host([data-state=taken_over]),:host([data-state=expired]),:host([data-state=error]){--accent:#cf222e}" +
    "p{margin:0;flex:1 1 14rem}.row{display:flex;flex-wrap:wrap;gap:8px;align-items:center}" +
    ".notice{flex-basis:100%;padding-top:8px;border-top:1px solid #d0d7de}.conn{font-size:12px;color:#59636e}" +
    ".conn:empty{display:none}" +
    "button{font:inherit;color:inherit;padding:3px 12px;border:1px solid #8c959f;border-radius:6px;" +
    "background:#f6f8fa;cursor:pointer}button:hover{background:#eaeef2}" +
    "a{color:#0969da;text-decoration:underline}" +
    "button:focus-visible,a:focus-visible{outline:3px solid #0969da;outline-offset:2px}" +
    "[hidden]{display:none!important}" +
    "@media (prefers-color-scheme:dark){:host{color:#e6edf3!important}.bar{background:#161b22;border-color:#3d444d}" +
    "button{background:#21262d;border-color:#656c76}button:hover{background:#30363d}a{color:#4493f8}" +
    ".conn{color:#9198a1}.notice{border-color:#3d444d}}";

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text) node.textContent = text;
    return node;
  }

  var host = el("div");
  host.id = "latch-banner";
  host.setAttribute("data-state", "connecting");
  var root = host.attachShadow({ mode: "open" });
  if (root.adoptedStyleSheets && typeof CSSStyleSheet === "function" && CSSStyleSheet.prototype.replaceSync) {
    // A constructed sheet is not an inline <style>, so a strict style-src does not block it.
    var sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS);
    root.adoptedStyleSheets = [sheet];
  } else {
    var style = el("style", "", CSS);
    if (script.nonce) style.nonce = script.nonce;
    root.appendChild(style);
  }
  var bar = el("div", "bar");
  var message = el("p", "msg");
  var actions = el("div", "row");
  var conn = el("span", "conn");
  var watchers = el("span", "conn presence");
  var notice = el("div", "notice row");
  message.setAttribute("aria-live", "polite");
  notice.setAttribute("role", "status");
  notice.setAttribute("aria-live", "polite");
  notice.hidden = true;
  bar.append(message, actions, watchers, conn, notice);
  root.appendChild(bar);
  document.documentElement.appendChild(host);

  // What the server last told us; the view is always derived from these.
  var lock = null;
  var resource = null;
  var holding = false;
  var hadHeld = false;
  var takenOverBy = null;
  var expired = false;
  var fatal = "";
  var requestedFrom = "";
  var takeoverSent = false;
  var releasedReason = "";
  var presence = null;
  var lastActivity = 0;
  // The wait queue: where we stand ({position, length, waiting}) and the standing offer
  // ({until, you}), as the server last said; whether we asked to wait in line.
  var line = null;
  var offer = null;
  var joined = false;
  var offerTimer = 0;

  var socket = null;
  var stopped = false;
  var leaving = false;
  var attempt = 0;
  var retryTimer = 0;
  var heartbeatTimer = 0;
  var stableTimer = 0;
  var noticeTimer = 0;
  var shown = "";

  function who(person) {
    return String((person && (person.name || person.id)) || "Someone");
  }

  function clock(iso) {
    var date = new Date(iso);
    if (!iso || isNaN(date.getTime())) return "";
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    return pad(date.getHours()) + ":" + pad(date.getMinutes());
  }

  function holderKey(m) {
    return (m.holder && m.holder.id) + "@" + m.since;
  }

  function ordinal(n) {
    var tens = n % 100;
    var suffix = tens >= 11 && tens <= 13 ? "th" : ["th", "st", "nd", "rd"][n % 10] || "th";
    return n + suffix;
  }

  function names(people) {
    var list = people.map(who);
    if (list.length > 3) list = list.slice(0, 2).concat([(list.length - 2) + " others"]);
    if (list.length < 2) return list.join("");
    return list.slice(0, -1).join(", ") + " and " + list[list.length - 1];
  }

  function secondsLeft(iso) {
    var left = Math.ceil((new Date(iso).getTime() - Date.now()) / 1000);
    return isNaN(left) ? 0 : Math.max(0, left);
  }

  function inLine() {
    return line && line.position ? "You're " + ordinal(line.position) + " in line" : "";
  }

  function lineButton() {
    return joined && line && line.position
      ? button("Leave the line", leaveQueue)
      : button("Wait in line", joinQueue);
  }

  function button(label, onClick) {
    var b = el("button", "", label);
    b.type = "button";
    b.addEventListener("click", onClick);
    return b;
  }

  // parts: strings, or [text, href] for a link. items: buttons or plain strings.
  function show(state, parts, items, urgent) {
    var key = JSON.stringify([state, parts, items.map(function (i) { return i.textContent || i; }), urgent]);
    if (key === shown) return;
    shown = key;
    host.setAttribute("data-state", state);
    message.setAttribute("role", urgent ? "alert" : "status");
    message.setAttribute("aria-live", urgent ? "assertive" : "polite");
    message.replaceChildren.apply(message, parts.map(function (part) {
      if (typeof part === "string") return document.createTextNode(part);
      var a = el("a", "", part[0]);
      a.href = part[1];
      return a;
    }));
    actions.replaceChildren.apply(actions, items.map(function (item) {
      return typeof item === "string" ? el("span", "", item) : item;
    }));
  }

  function render() {
    if (expired) return show("expired", ["Session expired — ", ["sign in again", location.href]], [], false);
    if (takenOverBy) {
      return show("taken_over", [takenOverBy + " took over; your changes were not saved"],
        [button("Reload", function () { location.reload(); })], true);
    }
    if (!lock) return show(fatal ? "error" : "connecting", [fatal || "Connecting…"], [], false);
    if (offer && offer.you && offer.until && !(lock.state === "held" && lock.you)) {
      var left = secondsLeft(offer.until);
      return show("offer", ["It's your turn — ", ["open", here], " (" + left + " s left)"], [], true);
    }
    if (lock.state === "held") {
      if (lock.you) {
        var waiting = line && line.waiting && line.waiting.length
          ? " · " + names(line.waiting) + (line.waiting.length === 1 ? " is" : " are") + " waiting"
          : "";
        return show("editing", ["You are editing — others see this as locked" + waiting], [], false);
      }
      if (lock.same_user) return show("other_session", ["Open in another tab or window"], [button("Move here", takeover)], false);
      var since = clock(lock.since);
      var items = [requestedFrom === holderKey(lock) ? "Access requested" : button("Request access", requestAccess)];
      if (lock.can_takeover) items.push(button("Take over", takeover));
      items.push(lineButton());
      var place = inLine() || (line && line.length ? line.length + " waiting" : "");
      return show("locked", ["Locked by " + who(lock.holder) + (since ? " since " + since : "") +
        (place ? " · " + place : "")], items, false);
    }
    if (offer && offer.until && !offer.you) {
      return show("locked", ["Reserved for the next in line until " + clock(offer.until) +
        (inLine() ? " · " + inLine() : "")], [lineButton()], false);
    }
    if (hadHeld && releasedReason === "idle") {
      return show("released", ["Released because you were away — reload to continue editing"],
        [button("Reload", function () { location.reload(); })], false);
    }
    if (hadHeld) {
      return show("released", ["Your lock was released — reload to continue editing"],
        [button("Reload", function () { location.reload(); })], false);
    }
    return show("free", ["Free now — ", ["open", here]], [], false);
  }

  function renderPresence() {
    var text = "";
    if (presence && lock && lock.state === "held") {
      var names = (presence.watching || []).map(who);
      var count = Number(presence.count) || names.length;
      if (holding && names.length) {
        var more = count - names.length;
        var list = names.length === 1 ? names[0]
          : names.slice(0, -1).join(", ") + " and " + names[names.length - 1];
        text = list + (more > 0 ? " and " + more + " more" : "") + (count === 1 ? " is watching" : " are watching");
      } else if (!holding && count) {
        text = count + (count === 1 ? " other person watching" : " other people watching");
      }
    }
    watchers.textContent = text;
  }

  function showNotice(text, items, seconds) {
    clearTimeout(noticeTimer);
    clearInterval(idleTimer);
    notice.removeAttribute("data-notice");
    notice.replaceChildren.apply(notice, [el("span", "", text)].concat(items));
    notice.hidden = false;
    if (seconds) noticeTimer = setTimeout(hideNotice, seconds * 1000);
  }

  function hideNotice() {
    clearTimeout(noticeTimer);
    clearInterval(idleTimer);
    notice.removeAttribute("data-notice");
    notice.hidden = true;
    notice.replaceChildren();
  }

  function send(payload) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(payload));
      return true;
    }
    showNotice("Not connected — try again in a moment.", [], 5);
    return false;
  }

  function takeover() {
    if (resource && send({ type: "takeover", resource: resource })) takeoverSent = true;
  }

  function joinQueue() {
    if (resource && send({ type: "join_queue", resource: resource })) {
      joined = true;
      render();
    }
  }

  function leaveQueue() {
    if (resource && send({ type: "leave_queue", resource: resource })) {
      joined = false;
      line = line && { position: null, length: Math.max(0, line.length - 1), waiting: [] };
      render();
    }
  }

  function requestAccess() {
    if (lock && resource && send({ type: "request_access", resource: resource })) {
      requestedFrom = holderKey(lock);
      render();
    }
  }

  function reloadIfFree() {
    if (!lock || lock.state !== "free" || (offer && offer.until)) return;
    openOnce();
  }

  function openOnce() {
    if (!autoReload) return;
    try {
      sessionStorage.setItem(reloadKey, "1");
    } catch (e) {
      // Without storage the reload still happens; a refusal then shows this page again.
    }
    autoReload = false;
    location.assign(here);
  }

  function onLock(m) {
    if (typeof m.resource === "string") resource = m.resource;
    lock = m;
    // The 423 page waits in line by itself: the person asked for the page and was refused.
    if (blockedPage && !joined && !(m.state === "held" && m.you) && !(offer && offer.you)) joinQueue();
    fatal = "";
    holding = m.state === "held" && m.you === true;
    if (blockedPage && m.state === "free" && autoReload) {
      // The lock is free: load the page the person asked for, once, unless the wait queue
      // offers it to someone. The queue's news follows the lock's on the socket, so give it a
      // moment; an offer to this viewer is shown with its countdown instead.
      clearTimeout(reloadTimer);
      reloadTimer = setTimeout(reloadIfFree, 400);
    }
    if (holding) {
      hadHeld = true;
      releasedReason = "";
      // Taken over from the 423 page: the page itself is now ours to load.
      if (blockedPage && takeoverSent) return location.assign(here);
    } else {
      hideNotice();
    }
    render();
    renderPresence();
  }

  // Real activity (typing, pointer, keys, focus, the page shown again) keeps the lock: at most
  // one `activity` message per 15 s.
  function activity(now) {
    if (!holding) return;
    var t = Date.now();
    if (!now && t - lastActivity < 15000) return;
    if (socket && socket.readyState === WebSocket.OPEN) {
      lastActivity = t;
      socket.send(JSON.stringify({ type: "activity" }));
    }
  }
  ["input", "pointerdown", "keydown", "focus"].forEach(function (type) {
    addEventListener(type, function () { activity(false); }, { capture: true, passive: true });
  });
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") activity(false);
  });

  var idleTimer = 0;
  function idleWarning(m) {
    if (!holding) return;
    var until = new Date(m.release_at).getTime();
    var label = el("span", "");
    function tickIdle() {
      var left = Math.max(0, Math.round((until - Date.now()) / 1000));
      label.textContent = "You seem away; the lock will be released in " + left + " s";
    }
    tickIdle();
    clearInterval(idleTimer);
    idleTimer = setInterval(tickIdle, 1000);
    clearTimeout(noticeTimer);
    notice.replaceChildren(label, button("Stay", function () { activity(true); }));
    notice.setAttribute("data-notice", "idle");
    notice.hidden = false;
  }

  function idleCleared() {
    clearInterval(idleTimer);
    if (notice.getAttribute("data-notice") === "idle") hideNotice();
  }

  var handlers = {
    lock: onLock,
    presence: function (m) {
      presence = m;
      renderPresence();
    },
    idle_warning: idleWarning,
    idle_cleared: idleCleared,
    released: function (m) {
      releasedReason = String(m.reason || "");
    },
    taken_over: function (m) {
      holding = false;
      takenOverBy = who(m.by);
      hideNotice();
      render();
    },
    access_requested: function (m) {
      if (!holding) return;
      showNotice(who(m.by) + " asks for access", [
        button("Hand over", function () {
          if (send({ type: "release", resource: resource })) hideNotice();
        }),
        button("Dismiss", hideNotice)
      ], 0);
    },
    queue: function (m) {
      line = { position: m.position || null, length: Number(m.length) || 0,
        waiting: Array.isArray(m.waiting) ? m.waiting : [] };
      if (line.position) joined = true;
      render();
    },
    offer: function (m) {
      offer = m.until ? { until: String(m.until), you: m.you === true } : null;
      // The 423 page of the only person waiting takes its turn by itself: nobody is held up
      // if they are away. With others behind them the offer waits for "open", and lapses.
      if (blockedPage && offer && offer.you && !(line && line.length > 0)) return openOnce();
      clearInterval(offerTimer);
      // The countdown is drawn from `until`; once a second is enough to keep it true.
      if (offer && offer.you) offerTimer = setInterval(render, 1000);
      render();
    },
    stash: function (m) {
      var items = Array.isArray(m.items) ? m.items : [];
      var link = root.querySelector("a.stash");
      if (!items.length) {
        if (link) link.remove();
        return;
      }
      if (!link) {
        link = el("a", "stash");
        link.target = "_blank";
        link.rel = "noopener";
        bar.appendChild(link);
      }
      link.textContent = "Your unsaved changes (" + items.length + ")";
      link.href = prefix + "/stash/" + encodeURIComponent(String(items[items.length - 1].id));
    },
    session_expired: function () {
      expired = true;
      stopped = true;
      render();
    },
    error: function (m) {
      var text = String(m.message || m.code || "Something went wrong");
      if (lock || expired || takenOverBy) {
        showNotice(text, [], 6);
      } else {
        fatal = text;
        render();
      }
    }
  };

  function connect() {
    retryTimer = 0;
    if (stopped || leaving || socket) return;
    var ws;
    try {
      ws = new WebSocket(wsUrl);
    } catch (e) {
      return reconnectLater();
    }
    socket = ws;
    ws.onopen = function () {
      conn.textContent = "";
      ws.send(JSON.stringify({ type: "watch", path: path, tab: tab }));
      heartbeatTimer = setInterval(function () {
        if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "heartbeat" }));
      }, Math.max(1000, (lease * 1000) / 3));
      stableTimer = setTimeout(function () { attempt = 0; }, 10000);
    };
    ws.onmessage = function (event) {
      if (typeof event.data !== "string") return;
      var m;
      try {
        m = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      if (m && Object.prototype.hasOwnProperty.call(handlers, m.type)) handlers[m.type](m);
    };
    ws.onclose = function (event) {
      clearInterval(heartbeatTimer);
      clearTimeout(stableTimer);
      if (socket === ws) socket = null;
      if (event.code === 4401) {
        expired = true;
        stopped = true;
      } else if (event.code === 4403) {
        stopped = true;
        lock = null;
        fatal = "Live lock status is not available to you";
      }
      render();
      reconnectLater();
    };
  }

  // Exponential backoff with full jitter, so a restarted server is not hit by every tab at once.
  function reconnectLater() {
    if (stopped || leaving || retryTimer) return;
    // Only worth saying when stale lock information is on screen.
    if (lock) conn.textContent = "Reconnecting…";
    var ceiling = Math.min(30000, 500 * Math.pow(2, attempt));
    attempt = Math.min(attempt + 1, 10);
    retryTimer = setTimeout(connect, Math.random() * ceiling);
  }

  addEventListener("online", function () {
    if (retryTimer) {
      clearTimeout(retryTimer);
      connect();
    }
  });

  addEventListener("pagehide", function () {
    leaving = true;
    // A short grace instead of a release, so that a reload keeps the lock.
    if (holding && resource && navigator.sendBeacon) {
      navigator.sendBeacon(prefix + "/release", JSON.stringify({ resource: resource, pagehide: true, tab: tab }));
    }
  });

  addEventListener("pageshow", function (event) {
    if (!event.persisted) return;
    leaving = false;
    connect();
  });

  render();
  connect();
})();
