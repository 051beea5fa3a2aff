//! `latch proxy`: one proxy instance on the configured stores.

use std::path::Path;
use std::sync::Arc;

use config::RuleStoreKind;
use proxy::rules_source::{self, FileRules, RuleSource};

pub fn run(path: &Path) -> Result<(), Vec<String>> {
    let config = super::load_config(path)?;
    let source: Arc<dyn RuleSource> = match &config.rules.store {
        RuleStoreKind::File(file) => Arc::new(FileRules { path: file.clone() }),
        RuleStoreKind::Mongo(url) => {
            return Err(vec![format!(
                "rules.store: {url}: the MongoDB rule store is not available in this build"
            )])
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| vec![format!("cannot start a runtime: {e}")])?;
    let (rules, version) = runtime.block_on(async {
        let rules = rules_source::load_rule_set(source.as_ref()).await?;
        let version = source.version().await.ok();
        Ok::<_, Vec<String>>((rules, version))
    })?;
    drop(runtime);
    let (store, tasks) = proxy::open_store(&config).map_err(|e| vec![e.to_string()])?;
    tracing::info!(
        listen = %config.proxy.listen,
        upstream = %config.proxy.upstream.address(),
        admin = %config.admin.listen,
        rules = rules.len(),
        "latch proxy starting"
    );
    let latch = proxy::Latch::new(config, store, rules).map_err(|e| vec![e.to_string()])?;
    let server =
        proxy::build(latch, Some((source, version)), tasks).map_err(|e| vec![e.to_string()])?;
    proxy::run(server);
    Ok(())
}
