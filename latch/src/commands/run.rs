//! `latch run`: the proxy and the control plane in one process, sharing the lock store (so
//! the control plane sees and releases the proxy's locks even with the memory store) and the
//! rule store (which the proxy polls for the control plane's changes).

use std::path::Path;

use store::MongoRuleStore;

use super::control_plane;
use super::proxy::{initial_rules, open_rule_store, store_runtime};

pub fn run(path: &Path) -> Result<(), Vec<String>> {
    let config = super::load_config(path)?;
    let listener = control_plane::bind(&config)?;
    let runtime = store_runtime()?;
    let (rule_store, mongo) = open_rule_store(&config, &runtime)?;
    if let Some(mongo) = &mongo {
        runtime.block_on(control_plane::announce_start(&MongoRuleStore::new(
            mongo.clone(),
        )));
    }
    let (initial, polling) = initial_rules(&config, path, rule_store.clone(), &runtime)?;
    let events = control_plane::open_event_log(&config, mongo.as_ref());
    let (locks, mut tasks) = proxy::open_store(&config).map_err(|e| vec![e.to_string()])?;
    tasks.push(control_plane::task(
        &config,
        listener,
        rule_store,
        events.clone(),
        locks.clone(),
        None,
    )?);
    tracing::info!(
        listen = %config.proxy.listen,
        control_plane = %config.control_plane.listen,
        admin = %config.admin.listen,
        rules = initial.rules.len(),
        "latch starting (proxy and control plane)"
    );
    let latch = proxy::Latch::new(config, locks, initial.rules).map_err(|e| vec![e.to_string()])?;
    latch.set_rules_problem(initial.problem);
    tasks.extend(latch.attach_audit(events));
    let server = proxy::build(latch, Some(polling), tasks).map_err(|e| vec![e.to_string()])?;
    proxy::run(server);
    drop(runtime);
    Ok(())
}
