//! Latch's proxy: a pingora service that enforces exclusive locks on rule-matched URLs.
//!
//! It owns the request path (normalize, match, authenticate, claim/renew/deny), the reserved
//! endpoints under `proxy.prefix`, banner injection and the banner WebSocket, and the admin
//! port. It knows lock state only through `store::LockStore` and rules only through
//! `rules::RuleSet`, so it runs the same on the embedded stores and on Redis/MongoDB.

mod actions;
pub mod admin;
mod app_sockets;
mod app_sse;
mod app_ws;
mod apps;
mod audit;
mod banner;
mod claim_rate;
mod conn_limit;
mod cookies;
mod decode;
mod endpoints;
mod fenced;
mod front;
pub mod gate;
mod header_names;
mod inject_body;
mod login;
pub mod metrics;
mod oidc;
mod origin;
mod peer;
mod presence;
mod recent;
mod redirect;
mod respond;
pub mod rules_source;
pub mod server;
mod service;
mod shapes;
mod stash;
mod state;
mod task;
mod time_fmt;
mod tls;
mod tls_conn;
mod upstream;
mod upstream_headers;
mod ws;

pub use endpoints::BANNER_JS;
pub use server::{build, run};
pub use state::{Auth, Latch, StartError};
pub use task::Task;
