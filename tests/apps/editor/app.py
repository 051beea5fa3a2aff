"""A small multi-page document editor, the kind of app Latch is put in front of.

Run: python3 app.py PORT (binds 127.0.0.1 only).

- GET  /                     the list of documents, with links to edit each one
- GET  /docs/<id>            read a document (not protected)
- GET  /docs/<id>/edit       the editor: a textarea that autosaves by XHR (a JSON POST) a moment
                             after each change, a live preview in an iframe, links to the other
                             documents
- GET  /docs/<id>/preview    the preview shown in the editor's iframe (a protected URL too)
- POST /docs/<id>/save       autosave: `{"text": ...}` as JSON, or form field `text`; answers
                             JSON with the fence it saw
- GET  /saves                JSON list of every save the app accepted (read from this port
                             directly by the tests, whatever the proxy answered)
- GET  /views                JSON list of every editor page the app served: `{"id", "user"}`

Every page is plain server-rendered HTML; the app knows nothing of Latch beyond reading the
`X-Latch-Fence` header it is given.
"""

import html
import json
import os
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pydeps"))

from flask import Flask, Response, jsonify, request  # noqa: E402

app = Flask(__name__)
documents = {1: "First draft", 2: "Second document", 3: "Third document", 9: "Quick note"}
saves = []
views = []
lock = threading.Lock()

EDITOR = """<!doctype html>
<html><head><meta charset="utf-8"><title>Editing {title}</title>
<style>body{{font-family:sans-serif;margin:2rem}}textarea{{width:60%;height:12rem}}
iframe{{width:35%;height:12rem;border:1px solid #ccc;vertical-align:top}}</style></head>
<body>
<h1>Editing document {id}</h1>
<nav>{links}</nav>
<textarea id="text" name="text">{text}</textarea>
<iframe id="preview" src="/docs/{id}/preview" title="Preview"></iframe>
<p>Status: <output id="status">loaded</output></p>
<script>
(function () {{
  var text = document.getElementById("text");
  var preview = document.getElementById("preview");
  var status = document.getElementById("status");
  var timer = 0;
  // Autosave: one JSON POST a moment after the last change; the preview reloads after each
  // save. `window.lastSent` is the body of the latest one.
  window.autosave = function (done) {{
    var xhr = new XMLHttpRequest();
    xhr.open("POST", "/docs/{id}/save");
    xhr.setRequestHeader("Content-Type", "application/json");
    xhr.onload = function () {{
      status.textContent = xhr.status === 200 ? "saved" : "not saved (" + xhr.status + ")";
      if (xhr.status === 200) preview.contentWindow.location.reload();
      if (done) done(xhr.status);
    }};
    xhr.onerror = function () {{
      status.textContent = "not saved (network)";
      if (done) done(0);
    }};
    window.lastSent = JSON.stringify({{ text: text.value }});
    xhr.send(window.lastSent);
  }};
  text.addEventListener("input", function () {{
    clearTimeout(timer);
    timer = setTimeout(function () {{ window.autosave(); }}, 300);
  }});
}})();
</script>
</body></html>
"""

PREVIEW = """<!doctype html>
<html><head><meta charset="utf-8"><title>Preview {id}</title></head>
<body><article id="rendered">{text}</article></body></html>
"""


def links(current):
    items = []
    for doc_id in sorted(documents):
        if doc_id != current:
            items.append(f'<a href="/docs/{doc_id}/edit">Edit document {doc_id}</a>')
    items.append('<a href="/">All documents</a>')
    return " | ".join(items)


def html_response(body):
    return Response(body, content_type="text/html; charset=utf-8")


@app.get("/")
def index():
    rows = "".join(
        f'<li><a href="/docs/{i}">Document {i}</a> (<a href="/docs/{i}/edit">edit</a>)</li>'
        for i in sorted(documents)
    )
    return html_response(
        f"<!doctype html><html><head><title>Documents</title></head>"
        f"<body><h1>Documents</h1><ul>{rows}</ul></body></html>"
    )


@app.get("/docs/<int:doc_id>")
def view(doc_id):
    if doc_id not in documents:
        return "no such document\n", 404
    return html_response(
        f"<!doctype html><html><head><title>Document {doc_id}</title></head>"
        f"<body><article>{html.escape(documents[doc_id])}</article></body></html>"
    )


@app.get("/docs/<int:doc_id>/edit")
def edit(doc_id):
    if doc_id not in documents:
        return "no such document\n", 404
    with lock:
        views.append({"id": doc_id, "user": request.headers.get("X-Latch-User")})
    return html_response(
        EDITOR.format(
            id=doc_id,
            title=html.escape(documents[doc_id][:40]),
            text=html.escape(documents[doc_id]),
            links=links(doc_id),
        )
    )


@app.get("/docs/<int:doc_id>/preview")
def preview(doc_id):
    if doc_id not in documents:
        return "no such document\n", 404
    return html_response(PREVIEW.format(id=doc_id, text=html.escape(documents[doc_id])))


@app.post("/docs/<int:doc_id>/save")
def save(doc_id):
    if doc_id not in documents:
        return jsonify(error="no such document"), 404
    sent = request.get_json(silent=True) if request.is_json else None
    text = sent.get("text", "") if isinstance(sent, dict) else request.form.get("text", "")
    fence = request.headers.get("X-Latch-Fence")
    with lock:
        documents[doc_id] = text
        saves.append(
            {"id": doc_id, "user": request.headers.get("X-Latch-User"), "fence": fence}
        )
    return jsonify(saved=True, id=doc_id, fence=fence)


@app.get("/views")
def list_views():
    with lock:
        return Response(json.dumps(views), content_type="application/json")


@app.get("/saves")
def list_saves():
    with lock:
        return Response(json.dumps(saves), content_type="application/json")


if __name__ == "__main__":
    port = int(sys.argv[1])
    app.run(host="127.0.0.1", port=port, threaded=True)
