//! `[tls]`: the HTTPS listener's keys, and the certificate files read the way `latch check` and
//! the proxy read them (certificates made by `openssl` through the test CA).

use std::path::Path;
use std::time::{Duration, SystemTime};

use config::{Config, Issue};
use testkit::certs::TestCa;

const SECRET: &str = "config-test-secret-long-enough-for-hs256";

fn load(dir: &Path, tls: &str) -> Result<Config, Vec<Issue>> {
    let text = format!(
        "[proxy]\nupstream = \"http://127.0.0.1:3000\"\n\n[auth]\nsecret = \"{SECRET}\"\n\n\
         [tls]\n{tls}"
    );
    Config::from_toml_str(&text, "latch.toml", dir, std::iter::empty())
}

#[test]
fn a_tls_section_with_good_files_is_read_with_paths_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "cfg");
    let default = ca.issue(&["app.test"]);
    let named = ca.issue(&["*.other.test"]);
    let config = load(
        dir.path(),
        &format!(
            "listen = \"0.0.0.0:8443\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n\
             certificates = [\"{}\"]\nhsts_seconds = 600\nredirect_listen = \"0.0.0.0:8081\"\n",
            default.cert.file_name().unwrap().to_str().unwrap(),
            default.key.display(),
            named.bundle.display()
        ),
    )
    .unwrap_or_else(|issues| panic!("{issues:#?}"));
    let tls = config.tls.expect("[tls] is on");
    assert_eq!(tls.listen.port(), 8443);
    assert_eq!(
        tls.default_certificate,
        Some((default.cert.clone(), default.key.clone()))
    );
    assert_eq!(tls.certificates, vec![named.bundle.clone()]);
    assert_eq!(tls.hsts, Some(Duration::from_secs(600)));
    assert_eq!(tls.reload, Some(Duration::from_secs(60)));
    assert_eq!(tls.redirect_listen.map(|a| a.port()), Some(8081));

    let loaded = config::load_certificate(&named.bundle, &named.bundle).unwrap();
    assert_eq!(loaded.names, vec!["*.other.test".to_owned()]);
}

#[test]
fn no_tls_section_means_no_tls() {
    let dir = tempfile::tempdir().unwrap();
    let text =
        format!("[proxy]\nupstream = \"http://127.0.0.1:3000\"\n\n[auth]\nsecret = \"{SECRET}\"\n");
    let config =
        Config::from_toml_str(&text, "latch.toml", dir.path(), std::iter::empty()).unwrap();
    assert!(config.tls.is_none());
}

#[test]
fn every_certificate_problem_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "cfg");
    let one = ca.issue(&["one.test"]);
    let two = ca.issue(&["two.test"]);
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    // A chain with the key of another certificate.
    let mismatched = dir.path().join("mismatched.pem");
    let mut bytes = std::fs::read(&one.cert).unwrap();
    bytes.extend(std::fs::read(&two.key).unwrap());
    std::fs::write(&mismatched, bytes).unwrap();
    // A certificate with no key.
    let keyless = dir.path().join("keyless.pem");
    std::fs::copy(&one.cert, &keyless).unwrap();
    let ip_only = ca.issue(&["127.0.0.1"]);

    let issues = load(
        dir.path(),
        &format!(
            "listen = \"127.0.0.1:8443\"\nredirect_listen = \"127.0.0.1:8443\"\n\
             cert_file = \"garbage.pem\"\nkey_file = \"{}\"\n\
             certificates = [\"mismatched.pem\", \"missing.pem\", \"keyless.pem\", \"{}\"]\n",
            one.key.display(),
            ip_only.bundle.display(),
        ),
    )
    .expect_err("refused");
    let text: Vec<String> = issues.iter().map(ToString::to_string).collect();
    let expect = [
        ("tls.cert_file", "garbage.pem: holds no PEM certificate"),
        (
            "tls.certificates",
            "mismatched.pem: the private key does not belong to the certificate",
        ),
        ("tls.certificates", "missing.pem"),
        ("tls.certificates", "keyless.pem: holds no PEM private key"),
        ("tls.certificates", "no DNS name"),
        ("tls.redirect_listen", "must differ from tls.listen"),
    ];
    assert_eq!(issues.len(), expect.len(), "{text:#?}");
    for (key, says) in expect {
        assert!(
            issues
                .iter()
                .any(|i| i.key == key && i.message.contains(says)),
            "no problem at {key} saying {says:?} in {text:#?}"
        );
    }
}

#[test]
fn tls_keys_without_a_listener_or_a_certificate_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let issues = load(dir.path(), "hsts_seconds = 60\n").expect_err("no listener");
    assert_eq!(issues.len(), 1, "{issues:#?}");
    assert_eq!(issues[0].key, "tls.listen");

    let issues = load(dir.path(), "listen = \"127.0.0.1:8443\"\n").expect_err("no certificate");
    assert_eq!(issues.len(), 1, "{issues:#?}");
    assert!(
        issues[0].message.contains("needs a certificate"),
        "{issues:#?}"
    );

    let issues = load(
        dir.path(),
        "listen = \"127.0.0.1:8443\"\ncert_file = \"a.pem\"\n",
    )
    .expect_err("half");
    assert_eq!(issues.len(), 1, "{issues:#?}");
    assert_eq!(issues[0].key, "tls.key_file");
}

#[test]
fn an_expired_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "cfg");
    let issued = ca.issue(&["app.test"]);
    let chain = std::fs::read(&issued.cert).unwrap();
    let key = std::fs::read(&issued.key).unwrap();
    // The test CA issues for two days; a week from now it has expired.
    let later = SystemTime::now() + Duration::from_secs(7 * 86_400);
    let (in_key, why) = config::parse_certificate(&chain, &key, later).expect_err("expired");
    assert!(!in_key);
    assert!(why.contains("expired"), "{why}");
    assert!(config::parse_certificate(&chain, &key, SystemTime::now()).is_ok());
}
