//! Subcommands (docs/operations.md). Each returns every problem it found; `main` prints them and
//! exits 2.

mod api;
mod check;
mod control_plane;
mod demo;
mod locks;
mod proxy;
mod rule_set;
mod run;
mod table;
mod token;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "latch",
    version,
    about = "Give one person at a time exclusive use of a page in any web app."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a sample app, the proxy, the control plane and the admin port in one process, on
    /// embedded defaults.
    Demo {
        /// Port for the proxy; the control plane is on PORT+1, the admin port on PORT+2.
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
    /// Run the proxy and the control plane in one process.
    Run {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Run the proxy only (for scale-out, many instances share Redis and MongoDB).
    Proxy {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Run the control plane only: the admin API and web UI.
    ControlPlane {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Validate the config and every rule; print every problem and exit 2 if there are any.
    Check {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Mint an HS256 JWT for tests and development.
    Token {
        #[arg(long)]
        secret: String,
        #[arg(long)]
        sub: String,
        #[arg(long)]
        name: Option<String>,
        /// Comma-separated roles, e.g. admin,editor.
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
        /// Lifetime: 90s, 15m, 1h, 7d or plain seconds.
        #[arg(long, default_value = "1h")]
        ttl: String,
        #[arg(long)]
        issuer: Option<String>,
        #[arg(long)]
        audience: Option<String>,
    },
    /// The live locks, through the control plane's API (an admin token in LATCH_ADMIN_TOKEN
    /// or --token-file).
    Locks {
        #[command(flatten)]
        remote: api::Remote,
        #[command(subcommand)]
        action: locks::Action,
    },
    /// The rules, through the control plane's API (an admin token in LATCH_ADMIN_TOKEN or
    /// --token-file).
    Rules {
        #[command(flatten)]
        remote: api::Remote,
        #[command(subcommand)]
        action: rule_set::Action,
    },
}

pub fn run(cli: Cli) -> Result<(), Vec<String>> {
    match cli.command {
        Command::Demo { port } => demo::run(port),
        Command::Run { config } => run::run(&config),
        Command::Proxy { config } => proxy::run(&config),
        Command::ControlPlane { config } => control_plane::run(&config),
        Command::Check { config } => check::run(&config),
        Command::Token {
            secret,
            sub,
            name,
            roles,
            ttl,
            issuer,
            audience,
        } => token::run(secret, sub, name, roles, &ttl, issuer, audience),
        Command::Locks { remote, action } => locks::run(remote, action),
        Command::Rules { remote, action } => rule_set::run(remote, action),
    }
}

/// Logs go to stderr; `LATCH_LOG` (tracing's env-filter syntax) sets the level, default `info`
/// with rustls's own messages at `error` only: it warns about what clients send in their
/// handshakes (an IP address as SNI, say), once per connection, which any client could use to
/// fill the log.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rustls=error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

/// Loads the config file with the process environment, as every config-taking command does.
fn load_config(path: &std::path::Path) -> Result<config::Config, Vec<String>> {
    config::Config::load(path, std::env::vars())
        .map_err(|issues| issues.iter().map(ToString::to_string).collect())
}
