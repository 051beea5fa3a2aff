// An Express 4 app with the routes the enforcement differential test protects with Latch.
//
// Run: node app.js PORT (binds 127.0.0.1 only). Node's HTTP parser and Express's router decide
// what reaches a handler. Express routes ignore case and a trailing slash by default, so the
// test's Latch rules for this app set `case_insensitive = true`, as an operator must.
//
// Protected (Latch locks them): GET /docs/:id(\d+)/edit and POST /docs/:id(\d+)/save.
// Unprotected: GET / and GET /handled, the JSON list of every protected handler run, which the
// test reads from this port directly.
'use strict';

const express = require('express');

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

const port = Number.parseInt(process.argv[2], 10);
app.listen(port, '127.0.0.1');
