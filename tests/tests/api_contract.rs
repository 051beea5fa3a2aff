//! The control plane honours its OpenAPI document, machine-checked: openapi-spec-validator
//! accepts the document, so does Redocly's linter with its recommended rules (locked in
//! tests/tools/package-lock.json), and schemathesis (pinned in tests/tools/requirements.txt,
//! configured by tests/tools/schemathesis.toml) runs every one of its checks, stateful phase
//! included, against a live `latch run` whose rule store holds rules and whose lock store holds
//! a lock. Any failure it reports fails this test, with its report.
//!
//! The rule store is the embedded one (a rule file): in a stateful sequence the MongoDB-compatible
//! test server once answered a lookup with a malformed error reply (no `code`), which a real
//! MongoDB never sends, so the control plane rightly answered 503, and this test would fail now
//! and then for the test server's sake. The API is the same on either store; `control_plane.rs`
//! runs the rules API on both.
//!
//! The run is bounded: a fixed seed (`LATCH_CONTRACT_SEED` sets another) and `--max-examples`
//! per operation, and a deadline after which schemathesis is stopped and the test fails. It
//! takes about 80 s on two cores.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::header::AUTHORIZATION;
use reqwest::StatusCode;
use serde_json::json;
use tests::node::{admin_bearer, Mode, Node, NodeConfig};
use tests::{client, eventually, token, Upstream};

/// Cases per operation and phase.
const MAX_EXAMPLES: &str = "100";
/// Past this, schemathesis is stopped and the test fails.
const DEADLINE: Duration = Duration::from_secs(300);

/// The generator's seed: fixed, so a run is repeatable; `LATCH_CONTRACT_SEED` explores others.
fn seed() -> String {
    std::env::var("LATCH_CONTRACT_SEED").unwrap_or_else(|_| "1".to_owned())
}

fn tools() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tools")
}

fn tool(name: &str) -> PathBuf {
    let path = tools().join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup.sh test",
        path.display()
    );
    path
}

/// Runs `command` to its end or to [`DEADLINE`], returning whether it succeeded and everything
/// it printed.
fn run(mut command: Command) -> (bool, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the checker starts");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting on the checker") {
            break Some(status);
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = format!(
        "{}{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    match status {
        Some(status) => (status.success(), text),
        None => (false, format!("{text}\nstopped after {DEADLINE:?}")),
    }
}

/// A `latch run` with two rules and a lock held through its proxy.
async fn seeded(dir: &Path, upstream: &Upstream) -> Node {
    std::fs::write(dir.join("rules.toml"), "").unwrap();
    let node = Node::start(
        Mode::Run,
        NodeConfig {
            dir,
            upstream_port: upstream.port(),
            rules_store: "rules.toml",
            poll_seconds: 1,
        },
    );
    for rule in [
        json!({"id": "doc", "pattern": "/echo/doc/(?P<id>[0-9]+)", "resource": "doc:{id}"}),
        json!({"id": "report", "pattern": "/echo/report/(?P<n>[a-z]+)", "mode": "read_only",
               "methods": ["GET", "POST"], "lease_seconds": 600, "priority": 3}),
    ] {
        let created = client()
            .post(node.api("/api/v1/rules"))
            .header(AUTHORIZATION, admin_bearer())
            .json(&rule)
            .send()
            .await
            .expect("the control plane answers");
        assert_eq!(created.status(), StatusCode::CREATED);
    }
    let claimed = eventually(Duration::from_secs(5), || async {
        let response = client()
            .get(node.proxy_url("/echo/doc/1"))
            .header(
                "cookie",
                format!("latch_token={}", token("alice", "Alice", &[])),
            )
            .send()
            .await
            .ok()?;
        let echo: serde_json::Value = response.json().await.ok()?;
        echo["headers"]["x-latch-resource"]
            .as_str()
            .map(str::to_owned)
    })
    .await;
    assert_eq!(claimed.as_deref(), Some("doc:1"), "log:\n{}", node.log());
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_honours_its_openapi_document() {
    let schemathesis = tool("venv/bin/schemathesis");
    let validator = tool("venv/bin/openapi-spec-validator");
    let redocly = tool("node_modules/.bin/redocly");
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let node = seeded(dir.path(), &upstream).await;

    let document = client()
        .get(node.api("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let document_path = dir.path().join("openapi.json");
    std::fs::write(&document_path, &document).unwrap();
    let mut validate = Command::new(validator);
    validate.arg(&document_path);
    let (valid, report) = run(validate);
    assert!(
        valid,
        "openapi-spec-validator rejects the document:\n{report}"
    );
    let mut lint = Command::new(redocly);
    lint.args(["lint", "--format=summary"])
        .arg(&document_path)
        .env("REDOCLY_TELEMETRY", "off")
        .env("REDOCLY_SUPPRESS_UPDATE_NOTICE", "true");
    let (clean, report) = run(lint);
    assert!(clean, "Redocly's linter finds problems:\n{report}");

    let mut check = Command::new(schemathesis);
    check
        .arg("--config-file")
        .arg(tools().join("schemathesis.toml"))
        .arg("--no-color")
        .arg("run")
        .arg(node.api("/api/v1/openapi.json"))
        .args(["--url", &node.api("")])
        .args(["--checks", "all"])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--seed", &seed()])
        .args(["--workers", "2"])
        .args(["--request-timeout", "10"])
        .args(["--header", &format!("Authorization: {}", admin_bearer())])
        .args(["--generation-database", "none"])
        .current_dir(dir.path())
        .env("SCHEMATHESIS_HOOKS", "")
        .env("NO_COLOR", "1");
    let (passed, report) = run(check);
    assert!(
        passed,
        "schemathesis found failures:\n{report}\ncontrol plane log:\n{}",
        node.log()
    );
    // Shown with --nocapture.
    println!("{report}");
    // It tested something: every operation of the document, the stateful phase included.
    let operations = document_operations(&document);
    assert!(
        report.contains(&format!("Tested: {operations}")),
        "not all {operations} operations were tested:\n{report}"
    );
    assert!(
        report.contains("✅ Stateful"),
        "the stateful phase did not run:\n{report}"
    );
}

/// How many operations the document describes.
fn document_operations(document: &[u8]) -> usize {
    let doc: serde_json::Value = serde_json::from_slice(document).expect("the document is JSON");
    doc["paths"]
        .as_object()
        .map(|paths| {
            paths
                .values()
                .filter_map(serde_json::Value::as_object)
                .map(|item| item.len())
                .sum()
        })
        .unwrap_or(0)
}
