//! The sample content app `latch demo` puts behind the proxy: documents with view, edit and
//! save pages, a read-only settings page, a live WebSocket feature, and demo sign-in.
//!
//! It is an ordinary app that knows nothing of locks. It only reads the `X-Latch-*` headers
//! the proxy adds, to show who is editing and under which fence; sign-in is here because in
//! real deployments an identity provider, not Latch, issues the tokens.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

/// The demo's users: (login, display name, roles).
const USERS: &[(&str, &str, &[&str])] = &[
    ("alice", "Alice", &["editor"]),
    ("bob", "Bob", &["editor"]),
    // A third editor, so the wait queue can be shown with two people in line.
    ("carol", "Carol", &["editor"]),
    ("admin", "Ada Admin", &["admin", "editor"]),
];

struct Doc {
    title: String,
    body: String,
    saved_by: Option<String>,
    fence: Option<u64>,
}

struct App {
    secret: Arc<String>,
    docs: Mutex<BTreeMap<u32, Doc>>,
    settings: Mutex<String>,
}

type Shared = Arc<App>;

/// Serves the app on `listener` until the process ends.
pub async fn serve(listener: std::net::TcpListener, secret: Arc<String>) {
    let docs = [
        (1, "Quarterly report", "Revenue grew in every region."),
        (2, "Style guide", "Use short sentences."),
        (3, "Launch plan", "Ship on Tuesday."),
    ]
    .into_iter()
    .map(|(id, title, body)| {
        (
            id,
            Doc {
                title: title.into(),
                body: body.into(),
                saved_by: None,
                fence: None,
            },
        )
    })
    .collect();
    let app = Arc::new(App {
        secret,
        docs: Mutex::new(docs),
        settings: Mutex::new("Notifications: on".into()),
    });
    let router = router(app);
    match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "sample app stopped");
            }
        }
        Err(e) => tracing::error!(error = %e, "sample app cannot listen"),
    }
}

fn router(app: Shared) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login))
        .route("/logout", get(logout))
        .route("/docs", get(all_docs))
        .route("/docs/{id}", get(view_doc))
        .route("/docs/{id}/edit", get(edit_doc))
        .route("/docs/{id}/save", post(save_doc))
        .route("/docs/{id}/review", get(review_doc))
        .route("/settings", get(settings).post(save_settings))
        .route("/docs/{id}/live", get(live))
        .with_state(app)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{t} — Docs</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:3.5rem auto;padding:0 1rem;color:#222}}
nav a{{margin-right:1rem}}textarea{{width:100%;min-height:10rem}}input[type=text]{{width:100%}}.meta{{color:#666;font-size:.9rem}}</style>
</head><body><nav><a href="/">Home</a><a href="/docs">All documents</a><a href="/settings">Settings</a></nav>
<h1>{t}</h1>{body}</body></html>"#,
        t = esc(title)
    ))
}

fn user_line(headers: &HeaderMap) -> String {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(esc)
            .unwrap_or_default()
    };
    let name = get("x-latch-user-name");
    let fence = get("x-latch-fence");
    let access = get("x-latch-access");
    if name.is_empty() {
        return String::new();
    }
    format!(
        r#"<p class="meta" id="who">Signed in as <b>{name}</b> · access: <span id="access">{access}</span>{}</p>"#,
        if fence.is_empty() {
            String::new()
        } else {
            format!(r#" · fence <span id="fence">{fence}</span>"#)
        }
    )
}

async fn home() -> Html<String> {
    let links: String = USERS
        .iter()
        .map(|(login, name, roles)| {
            format!(
                r#"<li><a id="login-{login}" href="/login?user={login}">Sign in as {name}</a> <span class="meta">({})</span></li>"#,
                roles.join(", ")
            )
        })
        .collect();
    page(
        "Latch demo",
        &format!(
            "<p>A small documents app that knows nothing about locks. Latch sits in front of it.</p>\
             <ul>{links}</ul><p><a href=\"/docs\">All documents</a> · <a href=\"/logout\">Sign out</a></p>"
        ),
    )
}

#[derive(Deserialize)]
struct LoginQuery {
    user: String,
    next: Option<String>,
}

/// Demo sign-in: mints a token for a known demo user and sets it as the proxy's cookie.
async fn login(State(app): State<Shared>, Query(q): Query<LoginQuery>) -> Response {
    let Some((login, name, roles)) = USERS.iter().find(|(l, _, _)| *l == q.user) else {
        return (StatusCode::NOT_FOUND, "no such demo user").into_response();
    };
    let request = auth::MintRequest {
        sub: (*login).to_string(),
        name: Some((*name).to_string()),
        roles: roles.iter().map(|r| (*r).to_string()).collect(),
        ttl_seconds: 8 * 3600,
        issuer: None,
        audience: None,
    };
    let token = match auth::mint_hs256(app.secret.as_bytes(), &request) {
        Ok(t) => t,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    // Only same-site paths: the sign-in link must not become an open redirect.
    let next = q
        .next
        .filter(|n| n.starts_with('/') && !n.starts_with("//") && !n.contains('\\'))
        .unwrap_or_else(|| "/docs".into());
    (
        [(
            header::SET_COOKIE,
            format!("latch_token={token}; Path=/; HttpOnly; SameSite=Lax"),
        )],
        Redirect::to(&next),
    )
        .into_response()
}

async fn logout() -> Response {
    (
        [(
            header::SET_COOKIE,
            "latch_token=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax",
        )],
        Redirect::to("/"),
    )
        .into_response()
}

async fn all_docs(State(app): State<Shared>) -> Html<String> {
    let docs = app.docs.lock().unwrap_or_else(|e| e.into_inner());
    let rows: String = docs
        .iter()
        .map(|(id, d)| {
            format!(
                r#"<li><a href="/docs/{id}">{}</a> — <a id="edit-{id}" href="/docs/{id}/edit">edit</a> · <a href="/docs/{id}/review">review</a></li>"#,
                esc(&d.title)
            )
        })
        .collect();
    page("All documents", &format!("<ul>{rows}</ul>"))
}

#[derive(Deserialize)]
struct Notice {
    notice: Option<String>,
}

async fn view_doc(
    State(app): State<Shared>,
    Path(id): Path<u32>,
    Query(n): Query<Notice>,
) -> Response {
    let docs = app.docs.lock().unwrap_or_else(|e| e.into_inner());
    let Some(d) = docs.get(&id) else {
        return (
            StatusCode::NOT_FOUND,
            page("Not found", "<p>No such document.</p>"),
        )
            .into_response();
    };
    let notice = match n.notice.as_deref() {
        Some("review-in-progress") => {
            "<p><b>Someone else is reviewing this document; here is the read-only view.</b></p>"
        }
        _ => "",
    };
    let saved = d
        .saved_by
        .as_ref()
        .map(|who| {
            format!(
                r#"<p class="meta">Last saved by {} (fence {})</p>"#,
                esc(who),
                d.fence.map(|f| f.to_string()).unwrap_or_else(|| "-".into())
            )
        })
        .unwrap_or_default();
    page(
        &d.title,
        &format!(
            r#"{notice}<div id="body">{}</div>{saved}<p><a href="/docs/{id}/edit">Edit</a></p>"#,
            esc(&d.body)
        ),
    )
    .into_response()
}

async fn edit_doc(State(app): State<Shared>, Path(id): Path<u32>, headers: HeaderMap) -> Response {
    let docs = app.docs.lock().unwrap_or_else(|e| e.into_inner());
    let Some(d) = docs.get(&id) else {
        return (
            StatusCode::NOT_FOUND,
            page("Not found", "<p>No such document.</p>"),
        )
            .into_response();
    };
    page(
        &format!("Editing: {}", d.title),
        &format!(
            r#"{who}<form method="post" action="/docs/{id}/save">
<p><input type="text" name="title" value="{title}"></p>
<p><textarea name="body" id="editor">{body}</textarea></p>
<p><button type="submit" id="save">Save</button> <span class="meta" id="live">live preview: connecting…</span></p></form>
<script>
(function(){{var s=new WebSocket((location.protocol==='https:'?'wss:':'ws:')+'//'+location.host+'/docs/{id}/live');
var out=document.getElementById('live'),ed=document.getElementById('editor');
s.onopen=function(){{out.textContent='live preview: connected';s.send(ed.value)}};
s.onmessage=function(e){{out.textContent='live preview: '+e.data}};
s.onclose=function(e){{out.textContent='live preview: closed'+(e.code===4423?' ('+e.reason+')':'')}};
ed.addEventListener('input',function(){{if(s.readyState===1)s.send(ed.value)}});}})();
</script>"#,
            who = user_line(&headers),
            title = esc(&d.title),
            body = esc(&d.body),
        ),
    )
    .into_response()
}

#[derive(Deserialize)]
struct SaveForm {
    title: String,
    body: String,
}

async fn save_doc(
    State(app): State<Shared>,
    Path(id): Path<u32>,
    headers: HeaderMap,
    Form(form): Form<SaveForm>,
) -> Response {
    let mut docs = app.docs.lock().unwrap_or_else(|e| e.into_inner());
    let Some(d) = docs.get_mut(&id) else {
        return (StatusCode::NOT_FOUND, "no such document").into_response();
    };
    d.title = form.title;
    d.body = form.body;
    d.saved_by = headers
        .get("x-latch-user-name")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    d.fence = headers
        .get("x-latch-fence")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    Redirect::to(&format!("/docs/{id}")).into_response()
}

async fn review_doc(Path(id): Path<u32>, headers: HeaderMap) -> Html<String> {
    page(
        "Review",
        &format!(
            r#"{}<p>You are reviewing document {id}. Others are sent to the read-only view meanwhile.</p>"#,
            user_line(&headers)
        ),
    )
}

async fn settings(State(app): State<Shared>, headers: HeaderMap) -> Html<String> {
    let value = app
        .settings
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    page(
        "Settings",
        &format!(
            r#"{}<form method="post" action="/settings"><p><input type="text" name="value" value="{}"></p>
<p><button type="submit">Save settings</button></p></form>"#,
            user_line(&headers),
            esc(&value)
        ),
    )
}

#[derive(Deserialize)]
struct SettingsForm {
    value: String,
}

async fn save_settings(State(app): State<Shared>, Form(form): Form<SettingsForm>) -> Redirect {
    *app.settings.lock().unwrap_or_else(|e| e.into_inner()) = form.value;
    Redirect::to("/settings")
}

/// The app's own WebSocket feature: a live word count of the editor's text. It lives under the
/// document's lock (the demo's `doc-live` rule), so Latch closes it when the editor loses it.
async fn live(ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(|mut socket: WebSocket| async move {
        while let Some(Ok(msg)) = socket.recv().await {
            if let Message::Text(text) = msg {
                let words = text.split_whitespace().count();
                if socket
                    .send(Message::Text(format!("{words} words").into()))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
    })
}
