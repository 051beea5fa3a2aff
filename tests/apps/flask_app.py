"""A Flask app with the routes the enforcement differential test protects with Latch.

Run: python3 flask_app.py PORT (binds 127.0.0.1 only). Serves with Werkzeug's own server, so
both Werkzeug's request-line parsing and its router decide what reaches a handler.

Protected (Latch locks them): GET /docs/<int:id>/edit and POST /docs/<int:id>/save.
Unprotected: GET / and GET /handled, the JSON list of every protected handler run, which the
test reads from this port directly to see what the app did, whatever the proxy answered.
"""

import os
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pydeps"))

from flask import Flask, jsonify, request  # noqa: E402

app = Flask(__name__)
handled = []
lock = threading.Lock()


def record(handler, doc_id):
    entry = {
        "handler": handler,
        "id": doc_id,
        "user": request.headers.get("X-Latch-User"),
        "probe": request.headers.get("X-Diff-Probe"),
        "path": request.path,
    }
    with lock:
        handled.append(entry)


@app.get("/")
def index():
    return "flask app\n"


@app.get("/docs/<int:id>/edit")
def edit(id):
    record("edit", id)
    return f"<html><head><title>edit {id}</title></head><body>edit {id}</body></html>"


@app.post("/docs/<int:id>/save")
def save(id):
    record("save", id)
    return f"saved {id}\n"


@app.get("/handled")
def list_handled():
    with lock:
        return jsonify(list(handled))


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]), threaded=True)
