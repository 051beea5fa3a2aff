//! Latch's enforcement boundary, checked against real app routers.
//!
//! Latch decides from its own reading of a request whether a rule matches; the app behind it
//! decides from its own reading which handler runs. Wherever the two readings differ, a request
//! can reach a protected handler that Latch never locked. This test puts Latch in front of
//! real Flask (Werkzeug), Django and Express apps and a servlet app on Tomcat (`tests/apps/`,
//! installed at pinned versions by `scripts/setup.sh test`; Tomcat is Debian's), lets Alice
//! hold doc 1, sends every hostile spelling of
//! `tests/corpus/enforcement.txt` as Bob byte for byte, and then asks each app which of its
//! protected handlers actually ran. Any run for doc 1 that was not Alice's own request is a
//! bypass, whatever status Latch answered; any handler run for one of Bob's requests that the
//! app attributed to someone other than Bob is an impersonation.
//!
//! The apps record each run with the `X-Diff-Probe` header of the request, so every record
//! is traced to the corpus line that caused it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tests::{client, free_port, token, Latch, LatchBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The rules every app is tested with. One file, so that a change of pattern syntax changes
/// every app's rules at once.
const RULES: &str = include_str!("../corpus/enforcement.rules.toml");

/// The hostile spellings; the file's header describes the line format.
const CORPUS: &str = include_str!("../corpus/enforcement.txt");

/// How long one request may take before it counts as unanswered. Latch and the apps answer
/// on loopback in milliseconds; this only bounds a hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// The whole corpus against one app must finish within this, so a proxy that hangs on many
/// lines fails the test instead of stalling CI.
const RUN_BUDGET: Duration = Duration::from_secs(90);

/// Alice's lease outlasts any run, so a slow run never frees doc 1 and lets Bob claim it.
const LOCKS: &str = "store = \"memory\"\nlease_seconds = 3600\ngrace_seconds = 10\n";

/// Debian's Tomcat 10, which runs the servlet app.
const TOMCAT_CATALINA: &str = "/usr/share/tomcat10/bin/catalina.sh";

/// The probe header that ties each handler run the app records to the request that caused it.
const PROBE: &str = "X-Diff-Probe";

/// The form body of every POST.
const POST_BODY: &[u8] = b"title=x";

#[derive(Clone, Copy, Debug)]
enum Kind {
    Flask,
    Django,
    Express,
    Tomcat,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Flask => "Flask",
            Kind::Django => "Django",
            Kind::Express => "Express",
            Kind::Tomcat => "Tomcat",
        }
    }

    /// The rules for this app. Express matches routes ignoring case, so its rules must too:
    /// that is what an operator has to configure for such an app.
    fn rules(self) -> String {
        match self {
            Kind::Express => {
                let tables = RULES.matches("[[rule]]").count();
                assert!(
                    tables > 0 && RULES.matches("[[rule]]\n").count() == tables,
                    "every `[[rule]]` of the fixture must stand on a line of its own, so each \
                     is made case-insensitive for Express"
                );
                RULES.replace("[[rule]]\n", "[[rule]]\ncase_insensitive = true\n")
            }
            Kind::Flask | Kind::Django | Kind::Tomcat => RULES.to_string(),
        }
    }
}

fn apps_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("apps")
}

/// One app as a child process on its own port; killed when dropped.
struct App {
    kind: Kind,
    child: Child,
    port: u16,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl App {
    /// Starts the app and waits until it answers `GET /`.
    fn start(kind: Kind) -> App {
        let apps = apps_dir();
        let dir = tempfile::tempdir().expect("a temp dir");
        let port = free_port();
        let (program, args, installed): (PathBuf, Vec<PathBuf>, PathBuf) = match kind {
            Kind::Flask => (
                "python3".into(),
                vec![apps.join("flask_app.py"), port.to_string().into()],
                apps.join("pydeps/flask"),
            ),
            Kind::Django => (
                "python3".into(),
                vec![apps.join("django_app.py"), port.to_string().into()],
                apps.join("pydeps/django"),
            ),
            Kind::Express => (
                "node".into(),
                vec![apps.join("express/app.js"), port.to_string().into()],
                apps.join("express/node_modules/express/package.json"),
            ),
            Kind::Tomcat => (
                apps.join("tomcat/run.sh"),
                vec![port.to_string().into(), dir.path().join("catalina")],
                TOMCAT_CATALINA.into(),
            ),
        };
        assert!(
            installed.exists(),
            "the {} app's packages are not installed ({} is missing): run `scripts/setup.sh test`, \
             which installs the test apps at their pinned versions",
            kind.name(),
            installed.display()
        );
        let log_path = dir.path().join("app.log");
        let log = std::fs::File::create(&log_path).expect("the app's log file");
        let child = Command::new(&program)
            .args(&args)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the app's log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "could not start {} for the {} app ({e}): run `scripts/setup.sh test`",
                    program.display(),
                    kind.name()
                )
            });
        let mut app = App {
            kind,
            child,
            port,
            log_path,
            _dir: dir,
        };
        app.wait_ready();
        app.warm_up();
        app
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the {} app exited at start ({status}); its log:\n{}",
                    self.kind.name(),
                    self.log()
                );
            }
            if answers_index(self.port) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the {} app did not answer within 30 s; its log:\n{}",
                self.kind.name(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Has the app compile and load its protected route once (Tomcat compiles a JSP on its
    /// first request, which can take seconds), with a request no handler records.
    fn warm_up(&self) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port))
            .unwrap_or_else(|e| panic!("{} app: connect: {e}", self.kind.name()));
        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
        s.write_all(
            b"GET /docs/0/warm-up HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        )
        .unwrap_or_else(|e| panic!("{} app: warm-up request: {e}", self.kind.name()));
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
    }

    /// Every protected handler run the app recorded, read from the app directly.
    async fn handled(&self) -> Vec<Handled> {
        let url = format!("http://127.0.0.1:{}/handled", self.port);
        let resp = client()
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{} app: GET /handled failed: {e}", self.kind.name()));
        assert_eq!(resp.status(), 200, "{} app: GET /handled", self.kind.name());
        resp.json()
            .await
            .unwrap_or_else(|e| panic!("{} app: /handled is not the record: {e}", self.kind.name()))
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether something on `port` answers `GET /` with 200.
fn answers_index(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

/// One protected handler run as the app recorded it.
#[derive(Debug, Deserialize)]
struct Handled {
    handler: String,
    /// The id as the app's router parsed it (a JSON number; `null` if the app could not).
    id: serde_json::Value,
    /// `X-Latch-User` as the app read it.
    user: Option<String>,
    probe: Option<String>,
    /// The path as the app saw it.
    path: Option<String>,
}

impl Handled {
    fn is_doc1(&self) -> bool {
        self.id.as_f64() == Some(1.0)
    }

    fn describe(&self) -> String {
        format!(
            "{}(id={}) user={} path={}",
            self.handler,
            self.id,
            self.user.as_deref().unwrap_or("-"),
            self.path.as_deref().unwrap_or("?")
        )
    }
}

/// One request of the corpus.
struct Case {
    /// The line number in the corpus file, which also names the request's probe.
    line: usize,
    text: String,
    method: Vec<u8>,
    target: Vec<u8>,
    headers: Vec<Vec<u8>>,
}

impl Case {
    fn probe(&self) -> String {
        format!("line{}", self.line)
    }
}

/// Reads the corpus; see the file's header for the format.
fn corpus(latch_port: u16, app_port: u16) -> Vec<Case> {
    let mut cases = Vec::new();
    for (i, raw) in CORPUS.lines().enumerate() {
        let line = i + 1;
        let text = raw.trim_end();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let expanded = text
            .replace("{latch}", &format!("127.0.0.1:{latch_port}"))
            .replace("{app}", &format!("127.0.0.1:{app_port}"));
        let mut parts = expanded.split(" | ");
        let request = parts.next().unwrap_or_default();
        let (method, target) = request.split_once(' ').unwrap_or((request, ""));
        assert!(
            !target.contains(' '),
            "corpus line {line}: a target cannot contain a space: {text:?}"
        );
        cases.push(Case {
            line,
            text: text.to_string(),
            method: unescape(method),
            target: unescape(target),
            headers: parts.map(unescape).collect(),
        });
    }
    assert!(!cases.is_empty(), "the corpus has no requests");
    cases
}

/// `\xHH` becomes the byte 0xHH; everything else, other backslashes included, stays as is.
fn unescape(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && bytes.get(i + 1) == Some(&b'x') {
            if let Some(b) = bytes
                .get(i + 2..i + 4)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// What Latch answered to one raw request.
#[derive(Clone, Debug)]
enum Answer {
    Status(u16),
    /// The connection closed (or failed) without a status line.
    NoResponse(String),
    /// Nothing complete came back in [`REQUEST_TIMEOUT`].
    Timeout,
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, so the table's column width applies.
        match self {
            Answer::Status(s) => f.pad(&s.to_string()),
            Answer::NoResponse(why) => f.pad(&format!("no response ({why})")),
            Answer::Timeout => f.pad("timeout"),
        }
    }
}

/// Builds one request byte for byte: the request line exactly as given, then the fixed
/// headers, the case's own and, for a POST, a small form body.
fn request_bytes(
    method: &[u8],
    target: &[u8],
    bearer: &str,
    probe: &str,
    extra: &[Vec<u8>],
) -> Vec<u8> {
    let mut req = method.to_vec();
    req.push(b' ');
    req.extend_from_slice(target);
    req.extend_from_slice(b" HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    req.extend_from_slice(
        format!("Authorization: Bearer {bearer}\r\n{PROBE}: {probe}\r\n").as_bytes(),
    );
    req.extend_from_slice(b"Connection: close\r\n");
    for h in extra {
        req.extend_from_slice(h);
        req.extend_from_slice(b"\r\n");
    }
    let post = method.eq_ignore_ascii_case(b"POST");
    if post {
        req.extend_from_slice(
            format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                POST_BODY.len()
            )
            .as_bytes(),
        );
    }
    req.extend_from_slice(b"\r\n");
    if post {
        req.extend_from_slice(POST_BODY);
    }
    req
}

/// Sends `request` on a new connection and reads the status line of the answer.
async fn send(port: u16, request: &[u8]) -> Answer {
    let mut stream = match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
        Ok(s) => s,
        Err(e) => return Answer::NoResponse(format!("connect: {e}")),
    };
    if let Err(e) = stream.write_all(request).await {
        return Answer::NoResponse(format!("write: {e}"));
    }
    let mut raw = Vec::new();
    let read = tokio::time::timeout(REQUEST_TIMEOUT, stream.read_to_end(&mut raw)).await;
    // A status line that arrived counts even if the connection then stayed open or was reset.
    if let Some(status) = status_of(&raw) {
        return Answer::Status(status);
    }
    match read {
        Err(_) => Answer::Timeout,
        Ok(Err(e)) => Answer::NoResponse(e.to_string()),
        Ok(Ok(_)) if raw.is_empty() => Answer::NoResponse("closed".into()),
        Ok(Ok(_)) => Answer::NoResponse(format!(
            "unparsable: {:?}",
            String::from_utf8_lossy(&raw[..raw.len().min(60)])
        )),
    }
}

fn status_of(raw: &[u8]) -> Option<u16> {
    let line_end = raw.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&raw[..line_end]).ok()?;
    let mut words = line.split(' ');
    words.next().filter(|v| v.starts_with("HTTP/1."))?;
    words.next()?.parse().ok()
}

/// Runs the whole corpus against one app behind Latch and checks what the app did.
async fn differential(kind: Kind) {
    let started = Instant::now();
    let app = App::start(kind);
    let latch: Latch = LatchBuilder::new(app.port)
        .rules(&kind.rules())
        .locks(LOCKS)
        .start();
    let alice = token("alice", "Alice", &[]);
    let bob = token("bob", "Bob", &[]);

    // Alice opens doc 1 and holds its lock from here on.
    let answer = send(
        latch.port,
        &request_bytes(b"GET", b"/docs/1/edit", &alice, "alice", &[]),
    )
    .await;
    assert!(
        matches!(answer, Answer::Status(200)),
        "{}: alice's GET /docs/1/edit got {answer}; latch log:\n{}",
        kind.name(),
        latch.log()
    );
    // Controls: Bob is refused the plain spelling, and does reach the handler of a document
    // nobody holds, which shows that the record sees Bob's handler runs.
    let answer = send(
        latch.port,
        &request_bytes(b"GET", b"/docs/1/edit", &bob, "baseline", &[]),
    )
    .await;
    assert!(
        matches!(answer, Answer::Status(423)),
        "{}: bob's plain GET /docs/1/edit got {answer}, not 423",
        kind.name()
    );
    let answer = send(
        latch.port,
        &request_bytes(b"GET", b"/docs/2/edit", &bob, "control", &[]),
    )
    .await;
    assert!(
        matches!(answer, Answer::Status(200)),
        "{}: bob's GET /docs/2/edit got {answer}",
        kind.name()
    );

    let cases = corpus(latch.port, app.port);
    let mut answers = Vec::with_capacity(cases.len());
    for case in &cases {
        let request = request_bytes(
            &case.method,
            &case.target,
            &bob,
            &case.probe(),
            &case.headers,
        );
        answers.push(send(latch.port, &request).await);
        assert!(
            started.elapsed() < RUN_BUDGET,
            "{}: the corpus took longer than {RUN_BUDGET:?} (at line {}: {})",
            kind.name(),
            case.line,
            case.text
        );
    }

    let handled = app.handled().await;
    let mut by_probe: BTreeMap<&str, Vec<&Handled>> = BTreeMap::new();
    for h in &handled {
        by_probe
            .entry(h.probe.as_deref().unwrap_or(""))
            .or_default()
            .push(h);
    }
    let runs = |probe: &str| by_probe.get(probe).map(Vec::as_slice).unwrap_or_default();

    // The plumbing works: Alice's own request reached the edit handler as Alice, and Bob's
    // control request reached it as Bob.
    let alice_runs = runs("alice");
    assert!(
        alice_runs
            .iter()
            .any(|h| h.handler == "edit" && h.is_doc1() && h.user.as_deref() == Some("alice")),
        "{}: alice's own request was not recorded as hers: {alice_runs:?}",
        kind.name()
    );
    let control_runs = runs("control");
    assert!(
        control_runs.iter().any(|h| h.handler == "edit"
            && h.id.as_f64() == Some(2.0)
            && h.user.as_deref() == Some("bob")),
        "{}: bob's control request for doc 2 was not recorded as his: {control_runs:?}",
        kind.name()
    );

    // Every run the app recorded, judged by who really sent it.
    let mut failures = Vec::new();
    for h in &handled {
        let probe = h.probe.as_deref().unwrap_or("");
        let alices = probe == "alice" && h.user.as_deref() == Some("alice");
        if h.is_doc1() && !alices {
            failures.push(format!("BYPASS ({probe}): {}", h.describe()));
        } else if probe != "alice" && h.user.as_deref().is_some_and(|u| u != "bob") {
            failures.push(format!("IMPERSONATION ({probe}): {}", h.describe()));
        }
    }

    let mut table = format!(
        "{} behind Latch, {} corpus lines in {:.1?} (status: what Bob got through Latch, from \
         Latch or from the app):\n{:<5} {:<52} {:<8} what the app ran\n",
        kind.name(),
        cases.len(),
        started.elapsed(),
        "line",
        "request",
        "status"
    );
    for (case, answer) in cases.iter().zip(&answers) {
        let ran = runs(&case.probe());
        let verdict = if ran.iter().any(|h| h.is_doc1()) {
            "BYPASS "
        } else if ran
            .iter()
            .any(|h| h.user.as_deref().is_some_and(|u| u != "bob"))
        {
            "IMPERSONATION "
        } else if ran.iter().any(|h| h.user.is_none()) {
            // Not a failure: no one holds that document. But Latch never matched the request
            // that ran a protected handler, so a lock on it would not have held either.
            "UNLOCKED "
        } else {
            ""
        };
        let ran = if ran.is_empty() {
            "-".to_string()
        } else {
            ran.iter()
                .map(|h| h.describe())
                .collect::<Vec<_>>()
                .join("; ")
        };
        let _ = writeln!(
            table,
            "{:<5} {:<52} {answer:<8} {verdict}{ran}",
            case.line, case.text
        );
    }
    if failures.is_empty() {
        eprintln!("{table}");
    }
    assert!(
        failures.is_empty(),
        "{}: protected handlers ran past Alice's lock on doc 1 or for someone posing as another \
         user:\n{}\n\n{table}",
        kind.name(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flask_runs_no_protected_handler_past_the_lock() {
    differential(Kind::Flask).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn django_runs_no_protected_handler_past_the_lock() {
    differential(Kind::Django).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn express_runs_no_protected_handler_past_the_lock() {
    differential(Kind::Express).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tomcat_runs_no_protected_handler_past_the_lock() {
    differential(Kind::Tomcat).await;
}
