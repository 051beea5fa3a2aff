//! `latch demo`: the sample content app, the proxy in front of it, the control plane with its
//! admin UI and the admin port, in one process, with no config file, no Redis and no MongoDB.
//!
//! The rules live in a file store in a fresh temporary directory, seeded with the demo rules,
//! so the admin UI can edit them and the proxy picks the edits up by polling, as it would in
//! production.

use std::path::PathBuf;
use std::sync::Arc;

use config::RuleStoreKind;
use proxy::rules_source::Polling;
use store::FileEventLog;

use crate::demo_app;
use crate::launch::{self, ProxyPlan};
use crate::stores::Stores;

/// The demo's rules: an edit page that blocks, its save endpoint and its live-preview
/// WebSocket on the same resource (the socket is fenced: it closes when the editor loses the
/// lock), a review page that redirects to the read view, and a read-only settings page.
pub const DEMO_RULES: &str = r#"
[[rule]]
id = "doc-edit"
pattern = "/docs/{id:int}/edit"
resource = "doc:{id}"
mode = "block"
idle_seconds = 120

[[rule]]
id = "doc-save"
pattern = "/docs/{id:int}/save"
resource = "doc:{id}"
methods = ["POST"]
inject = false

[[rule]]
id = "doc-live"
pattern = "/docs/{id:int}/live"
resource = "doc:{id}"
inject = false

[[rule]]
id = "doc-review"
pattern = "/docs/{id:int}/review"
resource = "review:{id}"
mode = "redirect"
redirect_to = "/docs/{id}?notice=review-in-progress"

[[rule]]
id = "settings"
pattern = "/settings"
resource = "settings"
mode = "read_only"
"#;

pub fn run(port: u16) -> Result<(), Vec<String>> {
    let secret: String = (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    let app = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| vec![format!("cannot start the sample app: {e}")])?;
    let app_port = app
        .local_addr()
        .map_err(|e| vec![format!("cannot start the sample app: {e}")])?
        .port();
    let mut config = config::Config::demo(port, app_port, &secret);
    let dir = demo_dir()?;
    let rules_file = dir.join("rules.toml");
    std::fs::write(&rules_file, DEMO_RULES.trim_start())
        .map_err(|e| vec![format!("cannot write {}: {e}", rules_file.display())])?;
    config.rules.store = RuleStoreKind::File(rules_file);
    config.rules.poll = std::time::Duration::from_secs(1);
    let rules = rules::parse_rules_toml(DEMO_RULES)
        .and_then(rules::RuleSet::compile)
        .map_err(|issues| issues.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    let mut stores = Stores::open(&config)?;
    // The demo's directory holds only its own files, so its activity is plainly `events.jsonl`.
    stores.events = Arc::new(FileEventLog::new(dir.join("events.jsonl")));
    let listener = launch::bind_control_plane(&config)?;
    let sign_in_admin = format!("http://{}/login?user=admin&next=/", config.proxy.listen);
    let auth = proxy::Auth::new(&config).map_err(|e| vec![e.to_string()])?;
    let tasks = vec![
        Box::pin(demo_app::serve(app, Arc::new(secret))) as proxy::Task,
        launch::control_plane(&config, listener, &stores, Some(sign_in_admin), Some(&auth))?,
    ];

    let base = format!("http://{}", config.proxy.listen);
    let admin = format!("http://{}", config.admin.listen);
    let console = format!("http://{}", config.control_plane.listen);
    println!(
        "Latch demo is running.\n\n  \
         App (through Latch): {base}/\n  \
         Sign in as Alice:    {base}/login?user=alice\n  \
         Sign in as Bob:      {base}/login?user=bob\n  \
         Sign in as Admin:    {base}/login?user=admin\n  \
         Admin console:       {console}/  (sign in as Admin first)\n  \
         Metrics and health:  {admin}/metrics  {admin}/readyz\n  \
         Rules and activity:  {}\n\n\
         Open a document's edit page as Alice in one browser and as Bob in another\n\
         (or a private window): Bob is blocked with a page naming Alice. Ctrl-C stops.",
        dir.display()
    );
    let polling = Polling {
        store: stores.rules.clone(),
        seen: None,
        snapshot: None,
    };
    let plan = ProxyPlan {
        config,
        rules,
        problem: None,
        polling,
        auth,
    };
    launch::run(stores, Some(plan), tasks)
}

/// A fresh directory for this demo's rules and activity, kept after exit so the edits made in
/// the admin UI can be looked at (or copied into a real deployment).
fn demo_dir() -> Result<PathBuf, Vec<String>> {
    let suffix: u32 = rand::random();
    let dir = std::env::temp_dir().join(format!("latch-demo-{}-{suffix:08x}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| vec![format!("cannot create {}: {e}", dir.display())])?;
    Ok(dir)
}
