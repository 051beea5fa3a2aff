//! `latch control-plane`: the admin API and UI alone.

use std::path::Path;

use crate::launch;
use crate::stores::Stores;

pub fn run(path: &Path) -> Result<(), Vec<String>> {
    let config = super::load_config(path)?;
    let listener = launch::bind_control_plane(&config)?;
    let stores = Stores::open(&config)?;
    if config.locks.store == config::LockStoreKind::Memory {
        tracing::warn!("locks.store is \"memory\": this control plane sees only its own process's locks; use Redis to see the proxies' locks");
    }
    let control_plane = launch::control_plane(&config, listener, &stores, None, None)?;
    stores.announce_start();
    launch::run(stores, None, vec![control_plane])
}
