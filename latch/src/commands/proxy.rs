//! `latch proxy`: one proxy instance on the configured stores.

use std::path::Path;

use crate::launch::{self, ProxyPlan};
use crate::stores::Stores;

pub fn run(path: &Path) -> Result<(), Vec<String>> {
    let config = super::load_config(path)?;
    let stores = Stores::open(&config)?;
    let plan = ProxyPlan::load(config, path, &stores)?;
    // With `[[app]]` entries each app has its upstream; the log names them all.
    let upstream = match plan.config.apps.as_slice() {
        [] => upstreams(&plan.config.proxy.upstream),
        apps => apps
            .iter()
            .map(|app| format!("{}={}", app.name, upstreams(&app.upstream)))
            .collect::<Vec<_>>()
            .join(", "),
    };
    tracing::info!(
        listen = %plan.config.proxy.listen,
        upstream = %upstream,
        admin = %plan.config.admin.listen,
        rules = plan.rules.len(),
        "latch proxy starting"
    );
    launch::run(stores, Some(plan), Vec::new())
}

/// The upstream's server URLs, for the start line of the log.
fn upstreams(upstream: &config::UpstreamConfig) -> String {
    let urls: Vec<String> = upstream.servers.iter().map(ToString::to_string).collect();
    urls.join(", ")
}
