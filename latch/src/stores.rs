//! Opening the configured stores: the lock store, the rule store and the audit trail beside
//! the rules. Every command that needs them opens them here, so each variant and its options
//! are read in one place.
//!
//! Opening never waits for a server: Redis and MongoDB URLs are parsed and clients prepared,
//! and connections are made on first use. A command therefore starts while a store is still
//! down (the proxy reports not ready on `/readyz`) and recovers when it is up; only a malformed
//! URL fails here. This module must not know what runs on the stores.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use config::{Config, LockStoreKind, RuleStoreKind};
use proxy::Task;
use store::{
    EventLog, FileEventLog, FileRuleStore, LockStore, MemoryLockStore, Mongo, MongoEventLog,
    MongoRuleStore, RedisLockStore, RedisOptions, RuleStore,
};
use tokio::runtime::Runtime;

/// The opened stores of one process, and the runtime their clients live on.
pub struct Stores {
    pub locks: Arc<dyn LockStore>,
    pub rules: Arc<dyn RuleStore>,
    pub events: Arc<dyn EventLog>,
    /// The lock store's background work, for the runtime that runs the servers: lease expiry,
    /// and for Redis also the event subscription that carries every instance's lock changes
    /// to this one's banners.
    pub tasks: Vec<Task>,
    /// The rules' database, when they live in MongoDB.
    mongo: Option<Mongo>,
    /// Kept for the whole process: the MongoDB driver's connection monitors run on it.
    runtime: Runtime,
}

impl Stores {
    /// Opens the rule store, then the audit trail beside it, then the lock store.
    ///
    /// The audit trail is the `events` collection in the rules' MongoDB database, or
    /// `<rules file stem>.events.jsonl` next to a rule file.
    pub fn open(config: &Config) -> Result<Stores, Vec<String>> {
        let runtime = runtime()?;
        let (rules, events, mongo): (Arc<dyn RuleStore>, Arc<dyn EventLog>, _) =
            match RuleHome::open(config, &runtime)? {
                RuleHome::File(file) => (
                    Arc::new(FileRuleStore::new(file.clone())),
                    Arc::new(FileEventLog::new(events_file(&file))),
                    None,
                ),
                RuleHome::Mongo(mongo) => (
                    Arc::new(MongoRuleStore::new(mongo.clone())),
                    Arc::new(MongoEventLog::new(mongo.clone())),
                    Some(mongo),
                ),
            };
        let (locks, tasks) = open_locks(config)?;
        Ok(Stores {
            locks,
            rules,
            events,
            tasks,
            mongo,
            runtime,
        })
    }

    /// Runs `future` on the stores' runtime, for work done before the servers start.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Bumps the rule version in MongoDB once, for a process that serves the control plane.
    /// After a crash between a rule write and its version bump, proxies would not notice the
    /// change; one bump at start makes every proxy reload once. A rule file needs nothing.
    pub fn announce_start(&self) {
        if let Some(mongo) = &self.mongo {
            let rules = MongoRuleStore::new(mongo.clone());
            if let Err(e) = self.block_on(rules.bump_version()) {
                tracing::warn!(error = %e, "cannot reach MongoDB at start; rule requests answer 503 until it is back");
            }
        }
    }
}

/// A runtime for the stores' own background work (the MongoDB driver's connection monitors),
/// alive for the whole process. Clients are created on it so that they keep working when
/// used from pingora's runtimes, which only exist once the server runs.
pub fn runtime() -> Result<Runtime, Vec<String>> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("latch-stores")
        .enable_all()
        .build()
        .map_err(|e| vec![format!("cannot start a runtime: {e}")])
}

/// The configured rule store alone; `latch check` reads the rules this way without opening
/// the lock store.
pub fn open_rules(config: &Config, runtime: &Runtime) -> Result<Arc<dyn RuleStore>, Vec<String>> {
    Ok(match RuleHome::open(config, runtime)? {
        RuleHome::File(file) => Arc::new(FileRuleStore::new(file)),
        RuleHome::Mongo(mongo) => Arc::new(MongoRuleStore::new(mongo)),
    })
}

/// Where the rules live, with the MongoDB client prepared.
enum RuleHome {
    File(PathBuf),
    Mongo(Mongo),
}

impl RuleHome {
    fn open(config: &Config, runtime: &Runtime) -> Result<RuleHome, Vec<String>> {
        match &config.rules.store {
            RuleStoreKind::File(file) => Ok(RuleHome::File(file.clone())),
            RuleStoreKind::Mongo(url) => runtime
                .block_on(Mongo::connect(url))
                .map(RuleHome::Mongo)
                .map_err(|e| vec![format!("rules.store: {e}")]),
        }
    }
}

/// A lock store and its background work.
type OpenedLocks = (Arc<dyn LockStore>, Vec<Task>);

/// The configured lock store and its background work.
fn open_locks(config: &Config) -> Result<OpenedLocks, Vec<String>> {
    match &config.locks.store {
        LockStoreKind::Memory => {
            let memory = MemoryLockStore::new();
            let reaper: Task = Box::pin(memory.clone().run_reaper());
            Ok((memory, vec![reaper]))
        }
        LockStoreKind::Redis(url) => {
            let redis = RedisOptions::from_url(url)
                .and_then(RedisLockStore::open)
                .map_err(|e| vec![format!("locks.store: {e}")])?;
            let listener: Task = Box::pin(redis.clone().run_listener());
            let reaper: Task = Box::pin(redis.clone().run_reaper());
            Ok((redis, vec![listener, reaper]))
        }
    }
}

fn events_file(rules_file: &Path) -> PathBuf {
    let stem = rules_file
        .file_stem()
        .map_or_else(|| "rules".into(), |s| s.to_string_lossy().into_owned());
    rules_file.with_file_name(format!("{stem}.events.jsonl"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_trail_sits_beside_the_rule_file() {
        assert_eq!(
            events_file(Path::new("/etc/latch/rules.toml")),
            Path::new("/etc/latch/rules.events.jsonl")
        );
        assert_eq!(
            events_file(Path::new("site.rules")),
            Path::new("site.events.jsonl")
        );
    }
}
