//! `latch proxy`: one proxy instance on the configured stores, and the rule store opening
//! shared with `latch run`.

use std::path::Path;
use std::sync::Arc;

use config::{Config, RuleStoreKind};
use proxy::rules_source::{self, Polling, Snapshot};
use store::{FileRuleStore, Mongo, MongoRuleStore, RuleStore};

/// A runtime for the stores' own background work (the MongoDB driver's connection monitors),
/// alive for the whole process. Clients are created on it so that they keep working when
/// used from pingora's runtimes, which only exist once the server runs.
pub fn store_runtime() -> Result<tokio::runtime::Runtime, Vec<String>> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("latch-stores")
        .enable_all()
        .build()
        .map_err(|e| vec![format!("cannot start a runtime: {e}")])
}

/// A rule store, plus its MongoDB handle when it lives there.
pub type OpenedRules = (Arc<dyn RuleStore>, Option<Mongo>);

/// The configured rule store, plus its MongoDB handle when it lives there (the control plane
/// keeps its audit trail in the same database). Never waits for the server.
pub fn open_rule_store(
    config: &Config,
    runtime: &tokio::runtime::Runtime,
) -> Result<OpenedRules, Vec<String>> {
    match &config.rules.store {
        RuleStoreKind::File(file) => Ok((Arc::new(FileRuleStore::new(file.clone())), None)),
        RuleStoreKind::Mongo(url) => {
            let mongo = runtime
                .block_on(Mongo::connect(url))
                .map_err(|e| vec![format!("rules.store: {e}")])?;
            Ok((Arc::new(MongoRuleStore::new(mongo.clone())), Some(mongo)))
        }
    }
}

/// Loads the initial rules and prepares polling. Rules in MongoDB get a snapshot beside the
/// config file, so a restart while MongoDB is down still has rules; a rule file is its own
/// durable copy.
pub fn initial_rules(
    config: &Config,
    config_path: &Path,
    store: Arc<dyn RuleStore>,
    runtime: &tokio::runtime::Runtime,
) -> Result<(rules_source::Initial, Polling), Vec<String>> {
    let snapshot = match config.rules.store {
        RuleStoreKind::Mongo(_) => Some(Snapshot::beside(config_path)),
        RuleStoreKind::File(_) => None,
    };
    let source = match &config.rules.store {
        RuleStoreKind::File(file) => file.display().to_string(),
        RuleStoreKind::Mongo(_) => "rules.store".to_owned(),
    };
    let initial = runtime
        .block_on(rules_source::initial(store.as_ref(), snapshot.as_ref()))
        .map_err(|problems| {
            problems
                .into_iter()
                .map(|p| format!("{source}: {p}"))
                .collect::<Vec<_>>()
        })?;
    let polling = Polling {
        store,
        seen: initial.version.clone(),
        snapshot,
    };
    Ok((initial, polling))
}

pub fn run(path: &Path) -> Result<(), Vec<String>> {
    let config = super::load_config(path)?;
    let runtime = store_runtime()?;
    let (rule_store, mongo) = open_rule_store(&config, &runtime)?;
    let (initial, polling) = initial_rules(&config, path, rule_store, &runtime)?;
    let events = super::control_plane::open_event_log(&config, mongo.as_ref());
    let (store, mut tasks) = proxy::open_store(&config).map_err(|e| vec![e.to_string()])?;
    tracing::info!(
        listen = %config.proxy.listen,
        upstream = %config.proxy.upstream.address(),
        admin = %config.admin.listen,
        rules = initial.rules.len(),
        "latch proxy starting"
    );
    let latch = proxy::Latch::new(config, store, initial.rules).map_err(|e| vec![e.to_string()])?;
    latch.set_rules_problem(initial.problem);
    tasks.extend(latch.attach_audit(events));
    let server = proxy::build(latch, Some(polling), tasks).map_err(|e| vec![e.to_string()])?;
    proxy::run(server);
    drop(runtime);
    Ok(())
}
