//! `latch demo`: the sample content app, the proxy in front of it and the admin port, in one
//! process, with no config file, no Redis and no MongoDB.

use std::sync::Arc;

use crate::demo_app;

/// The demo's rules: an edit page that blocks, its save endpoint on the same resource, a
/// review page that redirects to the read view, and a read-only settings page.
pub const DEMO_RULES: &str = r#"
[[rule]]
id = "doc-edit"
pattern = "/docs/(?P<id>[0-9]+)/edit"
resource = "doc:{id}"
mode = "block"

[[rule]]
id = "doc-save"
pattern = "/docs/(?P<id>[0-9]+)/save"
resource = "doc:{id}"
methods = ["POST"]
inject = false

[[rule]]
id = "doc-review"
pattern = "/docs/(?P<id>[0-9]+)/review"
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
    let config = config::Config::demo(port, app_port, &secret);
    let rules = rules::parse_rules_toml(DEMO_RULES)
        .and_then(rules::RuleSet::compile)
        .map_err(|issues| issues.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    let (store, mut tasks) = proxy::open_store(&config).map_err(|e| vec![e.to_string()])?;
    tasks.push(Box::pin(demo_app::serve(app, Arc::new(secret))));

    let base = format!("http://{}", config.proxy.listen);
    let admin = format!("http://{}", config.admin.listen);
    println!(
        "Latch demo is running.\n\n  \
         App (through Latch): {base}/\n  \
         Sign in as Alice:    {base}/login?user=alice\n  \
         Sign in as Bob:      {base}/login?user=bob\n  \
         Sign in as Admin:    {base}/login?user=admin\n  \
         Metrics and health:  {admin}/metrics  {admin}/readyz\n\n\
         Open a document's edit page as Alice in one browser and as Bob in another\n\
         (or a private window): Bob is blocked with a page naming Alice. Ctrl-C stops."
    );
    let latch = proxy::Latch::new(config, store, rules).map_err(|e| vec![e.to_string()])?;
    let server = proxy::build(latch, None, tasks).map_err(|e| vec![e.to_string()])?;
    proxy::run(server);
    Ok(())
}
