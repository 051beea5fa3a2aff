//! Assembling and running the servers a command asks for, on [`Stores`] it has opened: the
//! control plane, the proxy, or both, plus any extra tasks (the demo's sample app).
//!
//! Every serving command ends in [`run`], so the order in which things start and stop is
//! written once. With a proxy, pingora runs everything: SIGINT stops at once, SIGTERM first
//! lets requests in flight finish (see [`proxy::run`]), and the stores' runtime is dropped only
//! after pingora's runtimes have stopped. The control plane alone runs on a tokio runtime of
//! its own until its server stops, and sets no signal handlers: a signal ends the process as
//! the operating system's default does.

use std::net::TcpListener;
use std::path::Path;

use config::{Config, RuleStoreKind};
use proxy::rules_source::{self, Polling, Snapshot};
use proxy::Task;
use rules::RuleSet;

use crate::stores::Stores;

/// What the proxy starts with: its config, its first rules and how to keep them current.
pub struct ProxyPlan {
    pub config: Config,
    pub rules: RuleSet,
    /// Why the proxy has no trustworthy rules, when it has none: `/readyz` fails with it until
    /// a poll succeeds.
    pub problem: Option<String>,
    pub polling: Polling,
    /// Who checks identities: the proxy's, which a control plane in the same process shares.
    pub auth: proxy::Auth,
}

impl ProxyPlan {
    /// Loads the initial rules from `stores` and prepares polling. Rules in MongoDB get a
    /// snapshot beside the config file, so a restart while MongoDB is down still has rules; a
    /// rule file is its own durable copy.
    pub fn load(
        config: Config,
        config_path: &Path,
        stores: &Stores,
    ) -> Result<ProxyPlan, Vec<String>> {
        let (snapshot, source) = match &config.rules.store {
            RuleStoreKind::Mongo(_) => (
                Some(Snapshot::beside(config_path)),
                "rules.store".to_owned(),
            ),
            RuleStoreKind::File(file) => (None, file.display().to_string()),
        };
        let initial = stores
            .block_on(rules_source::initial(
                stores.rules.as_ref(),
                snapshot.as_ref(),
            ))
            .map_err(|problems| {
                problems
                    .into_iter()
                    .map(|p| format!("{source}: {p}"))
                    .collect::<Vec<_>>()
            })?;
        let polling = Polling {
            store: stores.rules.clone(),
            seen: initial.version,
            snapshot,
        };
        let auth = proxy::Auth::new(&config).map_err(|e| vec![e.to_string()])?;
        Ok(ProxyPlan {
            config,
            rules: initial.rules,
            problem: initial.problem,
            polling,
            auth,
        })
    }
}

/// Binds `control_plane.listen` now, so a busy port is reported before anything starts.
pub fn bind_control_plane(config: &Config) -> Result<TcpListener, Vec<String>> {
    let listen = config.control_plane.listen;
    let listener = TcpListener::bind(listen).map_err(|e| {
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
/// `demo_sign_in` is the sign-in link the UI offers in demo mode. `proxy_auth` is the proxy's
/// when both run in this process: the control plane then checks tokens with the proxy's
/// verifier and relying party, whose keys the proxy keeps current, so they are fetched once.
pub fn control_plane(
    config: &Config,
    listener: TcpListener,
    stores: &Stores,
    demo_sign_in: Option<String>,
    proxy_auth: Option<&proxy::Auth>,
) -> Result<Task, Vec<String>> {
    // Alone, it has its own, and keeps their fetched keys current with tasks of its own.
    let (auth, keys) = match proxy_auth {
        Some(auth) => (auth.clone(), Vec::new()),
        None => {
            let auth = proxy::Auth::new(config).map_err(|e| vec![e.to_string()])?;
            let keys = auth.key_providers();
            (auth, keys)
        }
    };
    let (control_plane, recorder) = control_plane::ControlPlane::new(control_plane::Parts {
        rules: stores.rules.clone(),
        events: stores.events.clone(),
        locks: stores.locks.clone(),
        verifier: auth.verifier,
        cookie: config.auth.cookie.clone(),
        admin_roles: config.control_plane.admin_roles.clone(),
        public_scheme: config.control_plane.public_scheme,
        path_parameters: config.proxy.path_parameters,
        reserved_prefix: config.proxy.prefix.clone(),
        apps: config.apps.clone(),
        lease: config.locks.lease,
        demo_sign_in,
        sign_in: auth.party,
    });
    let router = control_plane::router(control_plane);
    let listen = config.control_plane.listen;
    Ok(Box::pin(async move {
        tokio::spawn(recorder);
        for provider in keys {
            tokio::spawn(provider.run());
        }
        tracing::info!(listen = %listen, "control plane serving");
        if let Err(e) = control_plane::serve(listener, router).await {
            tracing::error!(error = %e, "control plane stopped");
        }
    }))
}

/// Runs the stores' background work, `tasks` and, when given, the proxy, until the process is
/// told to stop (with a proxy) or the tasks end (without one); then drops the stores.
pub fn run(
    mut stores: Stores,
    proxy: Option<ProxyPlan>,
    tasks: Vec<Task>,
) -> Result<(), Vec<String>> {
    let mut all = std::mem::take(&mut stores.tasks);
    match proxy {
        Some(plan) => {
            let latch = proxy::Latch::new(plan.config, stores.locks.clone(), plan.rules, plan.auth)
                .map_err(|e| vec![e.to_string()])?;
            latch.set_rules_problem(plan.problem);
            all.extend(tasks);
            all.extend(latch.attach_audit(stores.events.clone()));
            let server =
                proxy::build(latch, Some(plan.polling), all).map_err(|e| vec![e.to_string()])?;
            proxy::run(server);
        }
        None => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| vec![format!("cannot start a runtime: {e}")])?;
            runtime.block_on(async move {
                for task in all {
                    tokio::spawn(task);
                }
                futures::future::join_all(tasks).await;
            });
        }
    }
    drop(stores);
    Ok(())
}
