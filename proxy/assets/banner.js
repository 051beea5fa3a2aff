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
    ":host([data-state=free]){--accent:#0969da}" +
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
  var notice = el("div", "notice row");
  message.setAttribute("aria-live", "polite");
  notice.setAttribute("role", "status");
  notice.setAttribute("aria-live", "polite");
  notice.hidden = true;
  bar.append(message, actions, conn, notice);
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
    if (lock.state === "held") {
      if (lock.you) return show("editing", ["You are editing — others see this as locked"], [], false);
      if (lock.same_user) return show("other_session", ["Open in another tab or window"], [button("Move here", takeover)], false);
      var since = clock(lock.since);
      var items = [requestedFrom === holderKey(lock) ? "Access requested" : button("Request access", requestAccess)];
      if (lock.can_takeover) items.push(button("Take over", takeover));
      return show("locked", ["Locked by " + who(lock.holder) + (since ? " since " + since : "")], items, false);
    }
    if (hadHeld) {
      return show("released", ["Your lock was released — reload to continue editing"],
        [button("Reload", function () { location.reload(); })], false);
    }
    return show("free", ["Free now — ", ["open", here]], [], false);
  }

  function showNotice(text, items, seconds) {
    clearTimeout(noticeTimer);
    notice.replaceChildren.apply(notice, [el("span", "", text)].concat(items));
    notice.hidden = false;
    if (seconds) noticeTimer = setTimeout(hideNotice, seconds * 1000);
  }

  function hideNotice() {
    clearTimeout(noticeTimer);
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

  function requestAccess() {
    if (lock && resource && send({ type: "request_access", resource: resource })) {
      requestedFrom = holderKey(lock);
      render();
    }
  }

  function onLock(m) {
    if (typeof m.resource === "string") resource = m.resource;
    lock = m;
    fatal = "";
    holding = m.state === "held" && m.you === true;
    if (holding) {
      hadHeld = true;
      // Taken over from the 423 page: the page itself is now ours to load.
      if (blockedPage && takeoverSent) return location.assign(here);
    } else {
      hideNotice();
    }
    render();
  }

  var handlers = {
    lock: onLock,
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
      ws.send(JSON.stringify({ type: "watch", path: path }));
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
      navigator.sendBeacon(prefix + "/release", JSON.stringify({ resource: resource, pagehide: true }));
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
