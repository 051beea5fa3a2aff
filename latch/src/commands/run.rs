//! `latch run`: the proxy and the control plane in one process, sharing the lock store (so
//! the control plane sees and releases the proxy's locks even with the memory store) and the
//! rule store (which the proxy polls for the control plane's changes).

use std::path::Path;

use crate::launch::{self, ProxyPlan};
use crate::stores::Stores;

pub fn run(path: &Path) -> Result<(), Vec<String>> {
    let config = super::load_config(path)?;
    let listener = launch::bind_control_plane(&config)?;
    let stores = Stores::open(&config)?;
    stores.announce_start();
    let plan = ProxyPlan::load(config, path, &stores)?;
    let control_plane =
        launch::control_plane(&plan.config, listener, &stores, None, Some(&plan.auth))?;
    tracing::info!(
        listen = %plan.config.proxy.listen,
        control_plane = %plan.config.control_plane.listen,
        admin = %plan.config.admin.listen,
        rules = plan.rules.len(),
        "latch starting (proxy and control plane)"
    );
    launch::run(stores, Some(plan), vec![control_plane])
}
