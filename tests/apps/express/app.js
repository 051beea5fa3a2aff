// An Express 4 app with the routes the enforcement differential test protects with Latch.
//
// Run: node app.js PORT (binds 127.0.0.1 only). Node's HTTP parser and Express's router decide
// what reaches a handler. Express routes ignore case and a trailing slash by default, so the
// test's Latch rules for this app set `case_insensitive = true`, as an operator must.
//
// Protected (Latch locks them): GET /docs/:id(\d+)/edit and POST /docs/:id(\d+)/save.
// Unprotected: GET / and GET /handled, the JSON list of every protected handler run, which the
// test reads from this port directly.
//
// The app's own WebSocket (the `ws` package), for the fenced-socket tests: a handshake on
// /docs/:id/socket opens a socket that saves every message it gets and answers
// {"saved", "user", "fence"}; GET /docs/:id/live is a page whose script opens it, saves a
// draft, reconnects after a close with code 4423 and shows what happened. GET /sockets (read
// from this port directly) lists every save made over a socket and every close the app saw.
//
// The app's own server-sent events, for the fenced-stream tests (plain `res.write`, no
// package): GET /docs/:id/events streams `data: {"n", "user", "fence"}` every 200 ms after a
// `retry: 300`; GET /docs/:id/feed is a page whose script follows it with an EventSource and
// shows what happened. GET /streams (read from this port directly) lists every stream the app
// served: its user and fence, every request header whose name reads as X-Latch-* (any case,
// `_` for `-`) as sent, and whether the connection has closed.
'use strict';

const http = require('http');
const express = require('express');
const { WebSocketServer } = require('ws');

const app = express();
const handled = [];

function record(req, handler) {
  handled.push({
    handler,
    id: parseInt(req.params.id, 10),
    user: req.get('X-Latch-User') ?? null,
    probe: req.get('X-Diff-Probe') ?? null,
    path: req.path,
  });
}

app.get('/', (req, res) => res.send('express app\n'));

app.get('/docs/:id(\\d+)/edit', (req, res) => {
  record(req, 'edit');
  res.send(`<html><head><title>edit</title></head><body>edit ${req.params.id}</body></html>`);
});

app.post('/docs/:id(\\d+)/save', (req, res) => {
  record(req, 'save');
  res.send('saved\n');
});

app.get('/handled', (req, res) => res.json(handled));

const socketSaves = [];
const socketCloses = [];

app.get('/docs/:id(\\d+)/live', (req, res) => {
  res.send(`<!doctype html>
<html><head><title>live ${req.params.id}</title></head><body>
<h1>Live document ${req.params.id}</h1>
<p id="status">connecting</p>
<ul id="log"></ul>
<script>
  const url = 'ws://' + location.host + '/docs/${req.params.id}/socket';
  const log = (text) => {
    const li = document.createElement('li');
    li.textContent = text;
    document.getElementById('log').appendChild(li);
  };
  const status = (text) => { document.getElementById('status').textContent = text; };
  let attempt = 0;
  function connect() {
    attempt += 1;
    const ws = new WebSocket(url);
    let opened = false;
    ws.onopen = () => { opened = true; status('open'); ws.send('draft ' + attempt); };
    ws.onmessage = (e) => log('saved: ' + JSON.parse(e.data).saved);
    ws.onclose = (e) => {
      if (opened) {
        log('closed ' + e.code + ': ' + e.reason);
        status('closed ' + e.code);
        // The lock is gone: reconnect, as an app's retry logic would.
        if (e.code === 4423) setTimeout(connect, 100);
        return;
      }
      // The handshake was refused. A browser does not show its status, so ask with a save.
      fetch('/docs/${req.params.id}/save', { method: 'POST' }).then((r) => {
        log('reconnect refused; saving answers ' + r.status);
        status('refused ' + r.status);
      });
    };
  }
  connect();
</script>
</body></html>`);
});

const streams = [];

app.get('/docs/:id(\\d+)/events', (req, res) => {
  const stream = {
    id: Number.parseInt(req.params.id, 10),
    user: req.get('X-Latch-User') ?? null,
    fence: req.get('X-Latch-Fence') ?? null,
    latch: [],
    closed: false,
  };
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i];
    if (name.toLowerCase().replace(/_/g, '-').startsWith('x-latch-')) {
      stream.latch.push([name, req.rawHeaders[i + 1]]);
    }
  }
  streams.push(stream);
  res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
  res.write('retry: 300\n\n');
  let n = 0;
  const timer = setInterval(() => {
    n += 1;
    res.write(`data: ${JSON.stringify({ n, user: stream.user, fence: stream.fence })}\n\n`);
  }, 200);
  res.on('close', () => {
    clearInterval(timer);
    stream.closed = true;
  });
});

app.get('/docs/:id(\\d+)/feed', (req, res) => {
  res.send(`<!doctype html>
<html><head><title>feed ${req.params.id}</title></head><body>
<h1>Feed of document ${req.params.id}</h1>
<p id="count">0</p>
<ul id="log"></ul>
<script>
  const log = (text) => {
    const li = document.createElement('li');
    li.textContent = text;
    document.getElementById('log').appendChild(li);
  };
  let count = 0;
  const events = new EventSource('/docs/${req.params.id}/events');
  events.onopen = () => log('open');
  events.onmessage = () => { count += 1; document.getElementById('count').textContent = count; };
  events.addEventListener('latch-lock-lost', (e) => log('lock lost: ' + JSON.parse(e.data).reason));
  events.onerror = () => log('error, readyState ' + events.readyState);
</script>
</body></html>`);
});

app.get('/streams', (req, res) => res.json(streams));

app.get('/sockets', (req, res) => res.json({ saves: socketSaves, closes: socketCloses }));

const server = http.createServer(app);
const sockets = new WebSocketServer({ noServer: true });
server.on('upgrade', (req, socket, head) => {
  const match = /^\/docs\/(\d+)\/socket$/i.exec(new URL(req.url, 'http://app').pathname);
  if (!match) {
    socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    return;
  }
  sockets.handleUpgrade(req, socket, head, (ws) => {
    const who = {
      id: Number.parseInt(match[1], 10),
      user: req.headers['x-latch-user'] ?? null,
      fence: req.headers['x-latch-fence'] ?? null,
    };
    ws.on('message', (data) => {
      const text = data.toString();
      socketSaves.push({ ...who, text });
      ws.send(JSON.stringify({ saved: text, user: who.user, fence: who.fence }));
    });
    ws.on('close', (code, reason) => socketCloses.push({ ...who, code, reason: reason.toString() }));
  });
});

const port = Number.parseInt(process.argv[2], 10);
// The tests wait for this line: it says this process, not another, holds the port.
server.listen(port, '127.0.0.1', () => console.log(`listening on ${port}`));
