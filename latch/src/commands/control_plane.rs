//! `latch control-plane`: the admin API and UI alone, and the assembly shared with
//! `latch run` and `latch demo`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use config::{Config, RuleStoreKind};
use store::{EventLog, FileEventLog, LockStore, Mongo, MongoEventLog, MongoRuleStore, RuleStore};

/// The audit trail beside the rules: the `events` collection in the rules' MongoDB database,
/// or `<rules file stem>.events.jsonl` next to a rule file.
pub fn open_event_log(config: &Config, mongo: Option<&Mongo>) -> Arc<dyn EventLog> {
    match (mongo, &config.rules.store) {
        (Some(mongo), _) => Arc::new(MongoEventLog::new(mongo.clone())),
        (None, RuleStoreKind::File(file)) => Arc::new(FileEventLog::new(events_file(file))),
        (None, RuleStoreKind::Mongo(_)) => {
            // open_rule_store always yields a handle for MongoDB; keep a usable fallback.
            Arc::new(FileEventLog::new(PathBuf::from("latch-events.jsonl")))
        }
    }
}

fn events_file(rules_file: &Path) -> PathBuf {
    let stem = rules_file
        .file_stem()
        .map_or_else(|| "rules".into(), |s| s.to_string_lossy().into_owned());
    rules_file.with_file_name(format!("{stem}.events.jsonl"))
}

/// Binds `control_plane.listen` now, so a busy port is reported before anything starts.
pub fn bind(config: &Config) -> Result<std::net::TcpListener, Vec<String>> {
    let listen = config.control_plane.listen;
    let listener = std::net::TcpListener::bind(listen).map_err(|e| {
        vec![format!(
            "control_plane.listen: cannot listen on {listen}: {e}"
        )]
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| vec![format!("control_plane.listen: {e}")])?;
    Ok(listener)
}

/// The control plane serving on `listener`, as one task (its server and its audit recorder).
pub fn task(
    config: &Config,
    listener: std::net::TcpListener,
    rules: Arc<dyn RuleStore>,
    events: Arc<dyn EventLog>,
    locks: Arc<dyn LockStore>,
    demo_sign_in: Option<String>,
) -> Result<proxy::Task, Vec<String>> {
    let verifier = auth::Verifier::new(config.auth.settings.clone())
        .map_err(|e| vec![format!("auth: {e}")])?;
    let (control_plane, recorder) = control_plane::ControlPlane::new(control_plane::Parts {
        rules,
        events,
        locks,
        verifier,
        cookie: config.auth.cookie.clone(),
        admin_roles: config.control_plane.admin_roles.clone(),
        public_scheme: config.control_plane.public_scheme,
        path_parameters: config.proxy.path_parameters,
        demo_sign_in,
    });
    let router = control_plane::router(control_plane);
    let listen = config.control_plane.listen;
    Ok(Box::pin(async move {
        tokio::spawn(recorder);
        tracing::info!(listen = %listen, "control plane serving");
        if let Err(e) = control_plane::serve(listener, router).await {
            tracing::error!(error = %e, "control plane stopped");
        }
    }))
}

/// After a crash between a rule write and its version bump, proxies would not notice the
/// change; one bump at start makes every proxy reload once.
pub async fn announce_start(rules: &MongoRuleStore) {
    if let Err(e) = rules.bump_version().await {
        tracing::warn!(error = %e, "cannot reach MongoDB at start; rule requests answer 503 until it is back");
    }
}

pub fn run(path: &Path) -> Result<(), Vec<String>> {
    let config = super::load_config(path)?;
    let listener = bind(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| vec![format!("cannot start a runtime: {e}")])?;
    let (rules, mongo) = super::proxy::open_rule_store(&config, &runtime)?;
    let events = open_event_log(&config, mongo.as_ref());
    let (locks, store_tasks) = proxy::open_store(&config).map_err(|e| vec![e.to_string()])?;
    if config.locks.store == config::LockStoreKind::Memory {
        tracing::warn!("locks.store is \"memory\": this control plane sees only its own process's locks; use Redis to see the proxies' locks");
    }
    let task = task(&config, listener, rules, events, locks, None)?;
    runtime.block_on(async move {
        if let Some(mongo) = mongo {
            announce_start(&MongoRuleStore::new(mongo)).await;
        }
        for store_task in store_tasks {
            tokio::spawn(store_task);
        }
        task.await;
    });
    Ok(())
}
