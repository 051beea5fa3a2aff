//! With Redis configured, a rule saved through the control plane reaches a separate proxy at
//! once through a pub/sub nudge, long before its next poll.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use tests::instances::bearer;
use tests::latch::{clean_env, latch_bin};
use tests::redis::RedisServer;
use tests::{client, free_port, Upstream, SECRET};

/// A `latch` child process, killed on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(command: &str, config: &std::path::Path, log: &std::path::Path) -> Child {
    let mut cmd = Command::new(latch_bin());
    clean_env(&mut cmd);
    let log = std::fs::File::create(log).expect("log file");
    Child(
        cmd.arg(command)
            .arg("--config")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn latch"),
    )
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} never opened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_saved_in_the_control_plane_reaches_a_proxy_before_its_next_poll() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("rules.toml"), "").expect("empty rules");
    let (proxy_port, cp_port) = (free_port(), free_port());
    let config = |admin_port: u16| {
        format!(
            "[proxy]\nlisten = \"127.0.0.1:{proxy_port}\"\nupstream = \"http://127.0.0.1:{}\"\n\n\
             [auth]\nsecret = \"{SECRET}\"\n\n[locks]\nstore = \"{}\"\n\n\
             [rules]\nstore = \"rules.toml\"\npoll_seconds = 60\n\n\
             [control_plane]\nlisten = \"127.0.0.1:{cp_port}\"\n\n\
             [admin]\nlisten = \"127.0.0.1:{admin_port}\"\n",
            upstream.port(),
            redis.url()
        )
    };
    let proxy_config = dir.path().join("proxy.toml");
    let cp_config = dir.path().join("cp.toml");
    std::fs::write(&proxy_config, config(free_port())).expect("proxy config");
    std::fs::write(&cp_config, config(free_port())).expect("cp config");
    let _cp = spawn("control-plane", &cp_config, &dir.path().join("cp.log"));
    let _proxy = spawn("proxy", &proxy_config, &dir.path().join("proxy.log"));
    wait_port(cp_port);
    wait_port(proxy_port);
    // Let the proxy's Redis subscription come up before the change is published.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let http = client();
    let url = format!("http://127.0.0.1:{proxy_port}/echo/nudged/1");
    let open = http.get(&url).send().await.expect("unprotected GET");
    assert_eq!(open.status(), 200, "no rule protects the path yet");

    let created = http
        .post(format!("http://127.0.0.1:{cp_port}/api/v1/rules"))
        .header("authorization", bearer("root", &["admin"]))
        .header("content-type", "application/json")
        .body(json!({"id": "nudged", "pattern": "/echo/nudged/[0-9]+"}).to_string())
        .send()
        .await
        .expect("create rule");
    assert_eq!(created.status(), 201);
    let saved = Instant::now();

    loop {
        let status = http.get(&url).send().await.expect("GET").status();
        if status == 401 {
            break;
        }
        assert!(
            saved.elapsed() < Duration::from_secs(2),
            "the proxy still serves the path unprotected {:?} after the save (poll is 60 s): log:\n{}",
            saved.elapsed(),
            std::fs::read_to_string(dir.path().join("proxy.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
