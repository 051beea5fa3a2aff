//! The `latch` command line: `check` lists every problem and exits 2, `token` mints a usable
//! JWT, bad arguments and broken configs exit 2 with a message and never a backtrace, and the
//! environment overrides the file.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;
use tests::fixtures::BARE_DOC_EDIT;
use tests::{client, free_port, token, LatchBuilder, Upstream, SECRET};

fn good_config() -> String {
    format!(
        "[proxy]\nlisten = \"127.0.0.1:{}\"\nupstream = \"http://127.0.0.1:3000\"\n\n\
         [auth]\nsecret = \"{SECRET}\"\n\n[rules]\nstore = \"rules.toml\"\n\n\
         [admin]\nlisten = \"127.0.0.1:{}\"\n",
        free_port(),
        free_port()
    )
}

/// Runs `latch <args>` to completion: (exit code, stdout, stderr). Unlike the shared
/// `run_latch`, it drops every `LATCH_*` variable this test process inherited, so that only
/// `env` configures the command and a developer's shell cannot change the outcome.
fn run_latch(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(tests::latch::latch_bin());
    cmd.args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("LATCH_") {
            cmd.env_remove(name);
        }
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("run latch");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes `latch.toml` and `rules.toml` into a fresh directory.
fn files(config: &str, rules: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("latch.toml"), config).unwrap();
    std::fs::write(dir.path().join("rules.toml"), rules).unwrap();
    dir
}

fn config_path(dir: &tempfile::TempDir) -> String {
    dir.path().join("latch.toml").display().to_string()
}

/// Runs `latch check` on the directory's config.
fn check(dir: &tempfile::TempDir, env: &[(&str, &str)]) -> (i32, String, String) {
    run_latch(&["check", "--config", &config_path(dir)], env)
}

/// No panic message or backtrace, whatever went wrong.
fn assert_no_panic(stderr: &str) {
    for marker in ["panicked", "stack backtrace", "RUST_BACKTRACE"] {
        assert!(!stderr.contains(marker), "{marker} in: {stderr}");
    }
}

/// Every `(key, reason fragment)` appears on one line of `stderr` together with the file name.
fn assert_named(stderr: &str, file: &Path, expected: &[(&str, &str)]) {
    let file = file.display().to_string();
    for (key, reason) in expected {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(&file) && l.contains(key) && l.contains(reason)),
            "no line names {file} / {key} / {reason:?} in:\n{stderr}"
        );
    }
}

#[test]
fn check_accepts_a_good_config() {
    let dir = files(&good_config(), BARE_DOC_EDIT);
    let (code, out, err) = check(&dir, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok"), "{out}");
    assert!(out.contains("1 rule"), "{out}");
}

/// A capture that matches only digits is valid but loose: `check` warns on stderr, names the
/// rule and the typed capture to write instead, and still exits 0. A typed capture draws no
/// warning.
#[test]
fn check_warns_about_untyped_numeric_captures_and_still_passes() {
    let dir = files(&good_config(), BARE_DOC_EDIT);
    let (code, out, err) = check(&dir, &[]);
    assert_eq!(code, 0, "{out}{err}");
    let warning = err
        .lines()
        .find(|line| line.contains("warning"))
        .unwrap_or_else(|| panic!("no warning in: {err}"));
    assert!(warning.contains("rules.toml"), "{warning}");
    assert!(warning.contains("rule 'doc-edit'"), "{warning}");
    assert!(warning.contains("{id:int}"), "{warning}");

    let typed = BARE_DOC_EDIT.replace("(?P<id>[0-9]+)", "{id:int}");
    let dir = files(&good_config(), &typed);
    let (code, out, err) = check(&dir, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!err.contains("warning"), "{err}");

    let unknown = BARE_DOC_EDIT.replace("(?P<id>[0-9]+)", "{id:number}");
    let dir = files(&good_config(), &unknown);
    let (code, _, err) = check(&dir, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown capture type 'number'"), "{err}");
}

const BROKEN_CONFIG: &str = r#"
[proxy]
listen = "nowhere"
upstream = "ftp://example.com"
prefix = "latch/"
threads = 0
colour = "blue"

[auth]
secret = "short"
cookie = "bad cookie"
require = "sometimes"
leeway_seconds = "thirty"

[locks]
lease_seconds = 2
on_store_error = "maybe"
store = "etcd://x"

[rules]
store = "rules.toml"
poll_seconds = 0

[admin]
listen = 9100

[extras]
x = 1
"#;

fn broken_config_problems() -> Vec<(&'static str, &'static str)> {
    vec![
        ("proxy.listen", "nowhere"),
        ("proxy.upstream", "ftp://example.com"),
        ("proxy.prefix", "latch/"),
        ("proxy.threads", "0"),
        ("proxy.colour", "unknown key"),
        ("auth.secret", "5 bytes"),
        ("auth.cookie", "bad cookie"),
        ("auth.require", "sometimes"),
        ("auth.leeway_seconds", "integer"),
        ("locks.lease_seconds", "2"),
        ("locks.on_store_error", "maybe"),
        ("locks.store", "etcd://x"),
        ("rules.poll_seconds", "0"),
        ("admin.listen", "string"),
        ("extras", "unknown section"),
    ]
}

const BROKEN_RULES: &str = r#"
[[rule]]
id = "Bad Id"
pattern = "/a/(?P<id>[0-9]+"

[[rule]]
id = "dup"
pattern = "/b/(?P<id>[0-9]+)"
resource = "b:{nope}"
mode = "redirect"
redirect_to = "https://evil.example/{id}"

[[rule]]
id = "dup"
pattern = "/c"
lease_seconds = 1
colour = "red"
"#;

fn broken_rule_problems() -> Vec<(&'static str, &'static str)> {
    vec![
        ("Bad Id", "id"),
        ("Bad Id", "pattern"),
        ("'dup' (#2)", "resource"),
        ("'dup' (#2)", "redirect_to"),
        ("'dup' (#3)", "duplicate"),
        ("'dup' (#3)", "lease_seconds"),
        ("'dup' (#3)", "colour"),
    ]
}

#[test]
fn check_lists_every_config_problem_and_exits_2() {
    let dir = files(BROKEN_CONFIG, BARE_DOC_EDIT);
    let (code, out, err) = check(&dir, &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert_no_panic(&err);
    assert_named(
        &err,
        &dir.path().join("latch.toml"),
        &broken_config_problems(),
    );
}

#[test]
fn check_lists_trusted_proxy_and_key_url_problems() {
    let config = format!(
        "[proxy]\nupstream = \"http://127.0.0.1:{}\"\n\n\
         [auth]\nalgorithms = [\"RS256\"]\njwks_url = \"http://idp.example.com/jwks\"\n\n\
         [trusted_proxy]\npeers = [\"10.0.0.0/33\", \"proxy.internal\"]\n\
         user_header = \"X Forwarded User\"\nname_header = \"X-Latch-User\"\n",
        free_port()
    );
    let dir = files(&config, BARE_DOC_EDIT);
    let (code, out, err) = check(&dir, &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert_no_panic(&err);
    assert_named(
        &err,
        &dir.path().join("latch.toml"),
        &[
            ("auth.jwks_url", "loopback"),
            ("trusted_proxy.peers", "10.0.0.0/33"),
            ("trusted_proxy.peers", "proxy.internal"),
            ("trusted_proxy.user_header", "not a valid header name"),
            ("trusted_proxy.name_header", "Latch's own"),
        ],
    );
}

#[test]
fn check_lists_every_rule_problem_and_exits_2() {
    let dir = files(&good_config(), BROKEN_RULES);
    let (code, out, err) = check(&dir, &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert_no_panic(&err);
    assert_named(
        &err,
        &dir.path().join("rules.toml"),
        &broken_rule_problems(),
    );
}

#[test]
fn check_lists_config_and_rule_problems_together() {
    let dir = files(BROKEN_CONFIG, BROKEN_RULES);
    let (code, out, err) = check(&dir, &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert_no_panic(&err);
    assert_named(
        &err,
        &dir.path().join("latch.toml"),
        &broken_config_problems(),
    );
    assert_named(
        &err,
        &dir.path().join("rules.toml"),
        &broken_rule_problems(),
    );
}

#[test]
fn check_reports_unreadable_files() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.toml").display().to_string();
    let (code, _, err) = run_latch(&["check", "--config", &missing], &[]);
    assert_eq!(code, 2);
    assert!(err.contains(&missing), "{err}");
    assert_no_panic(&err);

    let dir = files("[proxy\nlisten =", BARE_DOC_EDIT);
    let (code, _, err) = check(&dir, &[]);
    assert_eq!(code, 2);
    assert!(err.contains("TOML"), "{err}");

    let config = good_config().replace("rules.toml", "no-such-rules.toml");
    let dir = files(&config, BARE_DOC_EDIT);
    let (code, _, err) = check(&dir, &[]);
    assert_eq!(code, 2);
    assert!(err.contains("no-such-rules.toml"), "{err}");
}

#[test]
fn environment_overrides_the_file() {
    // The file's secret is too short; the environment's replaces it.
    let config = good_config().replace(SECRET, "short");
    let dir = files(&config, BARE_DOC_EDIT);
    let (code, _, err) = check(&dir, &[]);
    assert_eq!(code, 2);
    assert!(err.contains("auth.secret"), "{err}");
    let (code, out, err) = check(&dir, &[("LATCH_AUTH_SECRET", SECRET)]);
    assert_eq!(code, 0, "{out}{err}");

    // A bad value from the environment is reported like one from the file.
    let (code, _, err) = check(
        &dir,
        &[
            ("LATCH_AUTH_SECRET", SECRET),
            ("LATCH_LOCKS_LEASE_SECONDS", "1"),
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("locks.lease_seconds"), "{err}");
    // Logging is configured by LATCH_LOG, which is not a config key and not an error.
    let (code, out, err) = check(
        &dir,
        &[("LATCH_AUTH_SECRET", SECRET), ("LATCH_LOG", "debug")],
    );
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn unknown_environment_keys_are_errors() {
    let dir = files(&good_config(), BARE_DOC_EDIT);
    for name in [
        "LATCH_AUTH_SECRETS",
        "LATCH_NOPE",
        "LATCH_PROXY_",
        "LATCH_CONTROL_LISTEN",
    ] {
        let (code, out, err) = check(&dir, &[(name, "x")]);
        assert_eq!(code, 2, "{name}: {out}{err}");
        assert!(err.contains(name), "{name}: {err}");
        assert_no_panic(&err);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_overrides_reach_a_running_proxy() {
    let upstream = Upstream::start().await;
    let latch = LatchBuilder::new(upstream.port())
        .rules(BARE_DOC_EDIT)
        .env("LATCH_PROXY_PREFIX", "/_gate")
        .start();
    let status = client()
        .get(latch.url("/_gate/status?path=/docs/1/edit"))
        .bearer_auth(token("alice", "Alice", &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 200);
    let doc: Value = status.json().await.unwrap();
    assert_eq!(doc["resource"], "doc:1");
    // The default prefix is now an ordinary path of the app.
    let old = client()
        .get(latch.url("/__latch/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 404);
}

#[test]
fn proxy_with_a_broken_config_exits_2_with_a_clear_message() {
    let dir = files(BROKEN_CONFIG, BARE_DOC_EDIT);
    let started = Instant::now();
    let (code, _, err) = run_latch(&["proxy", "--config", &config_path(&dir)], &[]);
    assert_eq!(code, 2, "{err}");
    assert_no_panic(&err);
    assert_named(
        &err,
        &dir.path().join("latch.toml"),
        &broken_config_problems(),
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    let dir = files(&good_config(), BROKEN_RULES);
    let (code, _, err) = run_latch(&["proxy", "--config", &config_path(&dir)], &[]);
    assert_eq!(code, 2, "{err}");
    assert_no_panic(&err);
    assert!(err.contains("Bad Id"), "{err}");

    let (code, _, err) = run_latch(&["proxy", "--config", "/nonexistent/latch.toml"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/latch.toml"), "{err}");
}

#[test]
fn proxy_reports_a_busy_port() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = format!(
        "[proxy]\nlisten = \"127.0.0.1:{port}\"\nupstream = \"http://127.0.0.1:3000\"\n\n\
         [auth]\nsecret = \"{SECRET}\"\n\n[admin]\nlisten = \"127.0.0.1:{}\"\n",
        free_port()
    );
    let dir = files(&config, BARE_DOC_EDIT);
    let (code, _, err) = run_latch(&["proxy", "--config", &config_path(&dir)], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("proxy.listen"), "{err}");
    assert_no_panic(&err);
}

fn payload(jwt: &str) -> Value {
    let part = jwt.trim().split('.').nth(1).expect("a JWT has three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[test]
fn token_prints_a_jwt_the_proxy_accepts() {
    let (code, out, err) = run_latch(
        &[
            "token",
            "--secret",
            SECRET,
            "--sub",
            "alice",
            "--name",
            "Alice",
            "--roles",
            "admin,editor",
            "--ttl",
            "1h",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let jwt = out.trim();
    assert_eq!(jwt.lines().count(), 1);
    let claims = payload(jwt);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["name"], "Alice");
    assert_eq!(claims["roles"], serde_json::json!(["admin", "editor"]));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let exp = claims["exp"].as_u64().unwrap();
    assert!((now + 3590..=now + 3610).contains(&exp), "exp {exp}");

    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    jsonwebtoken::decode::<Value>(
        jwt,
        &jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()),
        &validation,
    )
    .expect("an HS256 token signed with the given secret");

    let (code, out, _) = run_latch(
        &["token", "--secret", SECRET, "--sub", "bob", "--ttl", "90s"],
        &[],
    );
    assert_eq!(code, 0);
    let claims = payload(&out);
    let ttl = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert_eq!(ttl, 90);
}

#[test]
fn bad_arguments_exit_2_without_a_backtrace() {
    let cases: &[&[&str]] = &[
        &[],
        &["frobnicate"],
        &["check"],
        &["proxy", "--config"],
        &["token", "--sub", "alice"],
        &["token", "--secret", SECRET],
        &["token", "--secret", "short", "--sub", "alice"],
        &[
            "token", "--secret", SECRET, "--sub", "alice", "--ttl", "forever",
        ],
        &["token", "--secret", SECRET, "--sub", "alice", "--ttl", "0"],
        &["token", "--secret", SECRET, "--sub", ""],
        &["demo", "--port", "http"],
    ];
    for args in cases {
        let (code, out, err) = run_latch(args, &[("RUST_BACKTRACE", "1")]);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(!err.trim().is_empty(), "{args:?}: no message");
        assert_no_panic(&err);
    }
}

#[test]
fn every_subcommand_has_help() {
    for sub in ["demo", "proxy", "check", "token"] {
        let (code, out, err) = run_latch(&[sub, "--help"], &[]);
        assert_eq!(code, 0, "{sub}: {err}");
        assert!(out.contains("Usage"), "{sub}: {out}");
    }
    let (code, out, _) = run_latch(&["--help"], &[]);
    assert_eq!(code, 0);
    for sub in ["demo", "proxy", "check", "token"] {
        assert!(out.contains(sub), "{out}");
    }
}

/// `[[app]]` entries instead of `proxy.upstream`, with the given hosts for the second app.
fn apps_config(crm_hosts: &str) -> String {
    format!(
        "[proxy]\nlisten = \"127.0.0.1:{}\"\n\n\
         [auth]\nsecret = \"{SECRET}\"\n\n[rules]\nstore = \"rules.toml\"\n\n\
         [admin]\nlisten = \"127.0.0.1:{}\"\n\n\
         [[app]]\nname = \"wiki\"\nhosts = [\"wiki.example.com\", \"*.example.com\"]\nupstream = \"http://127.0.0.1:3001\"\n\n\
         [[app]]\nname = \"crm\"\nhosts = {crm_hosts}\nupstream = \"http://127.0.0.1:3002\"\n",
        free_port(),
        free_port()
    )
}

const APP_RULES: &str = r#"
[[rule]]
id = "wiki-doc"
pattern = "/docs/{id:int}"
app = "wiki"

[[rule]]
id = "ghost-doc"
pattern = "/ghost/{id:int}"
app = "ghost"

[[rule]]
id = "any-doc"
pattern = "/any/{id:int}"
"#;

#[test]
fn check_reports_host_overlaps_and_rules_naming_no_app() {
    let good = files(
        &apps_config("[\"crm.example.com\"]"),
        &APP_RULES.replace("ghost", "crm"),
    );
    let (code, out, err) = check(&good, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("3 rules"), "{out}");

    let rules_bad = files(&apps_config("[\"crm.example.com\"]"), APP_RULES);
    let (code, out, err) = check(&rules_bad, &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert_no_panic(&err);
    assert_named(
        &err,
        &rules_bad.path().join("rules.toml"),
        &[("ghost-doc", "\"ghost\" is not an app of this proxy")],
    );

    let hosts_bad = files(
        &apps_config("[\"WIKI.example.com\", \"*.example.com\"]"),
        BARE_DOC_EDIT,
    );
    let (code, out, err) = check(&hosts_bad, &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert_named(
        &err,
        &hosts_bad.path().join("latch.toml"),
        &[
            (
                "app[2].hosts",
                "wiki.example.com is already a host of app[1]",
            ),
            ("app[2].hosts", "*.example.com is already a host of app[1]"),
        ],
    );
}
