//! The MongoDB connection shared by [`crate::MongoRuleStore`] and [`crate::MongoEventLog`].
//!
//! Opening a connection never waits for the server: the driver connects lazily, so a proxy or
//! control plane can start while MongoDB is down and serve from what it has. Server selection
//! is bounded by [`SELECTION_TIMEOUT`] instead of the driver's 30 s default, so an operation
//! against a dead server fails while the admin is still looking at the screen.
//!
//! Only what a standalone MongoDB 6+ offers is used: no transactions, no change streams.

use std::time::Duration;

use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::ClientOptions;
use mongodb::{Client, Database};

/// How long an operation waits for a usable server before it reports the store unavailable.
pub const SELECTION_TIMEOUT: Duration = Duration::from_secs(2);

/// Database used when the URL names none.
const DEFAULT_DATABASE: &str = "latch";

/// MongoDB's duplicate key error code.
const DUPLICATE_KEY: i32 = 11000;

/// A handle on one database. Cheap to clone; clones share the connection pool.
#[derive(Clone, Debug)]
pub struct Mongo {
    pub(crate) db: Database,
    /// The URL without credentials, for messages.
    pub(crate) shown: String,
}

impl Mongo {
    /// Parses `url` and prepares a client. Fails only on a malformed URL (or, for
    /// `mongodb+srv://`, when its DNS records cannot be read); the server is not contacted.
    pub async fn connect(url: &str) -> Result<Mongo, String> {
        let shown = redact(url);
        let mut options = ClientOptions::parse(url)
            .await
            .map_err(|e| format!("{shown}: {e}"))?;
        options.server_selection_timeout = Some(SELECTION_TIMEOUT);
        options.connect_timeout = Some(SELECTION_TIMEOUT);
        if options.app_name.is_none() {
            options.app_name = Some("latch".to_owned());
        }
        let name = options
            .default_database
            .clone()
            .unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
        let client = Client::with_options(options).map_err(|e| format!("{shown}: {e}"))?;
        Ok(Mongo {
            db: client.database(&name),
            shown,
        })
    }

    /// The message for an operation that failed on the server's side.
    pub(crate) fn unavailable(&self, e: &mongodb::error::Error) -> String {
        format!(
            "MongoDB at {} did not answer: {}",
            self.shown,
            first_line(e)
        )
    }
}

/// Whether `e` is a unique index refusing a second document with the same key.
pub(crate) fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(write)) => write.code == DUPLICATE_KEY,
        ErrorKind::Command(command) => command.code == DUPLICATE_KEY,
        ErrorKind::InsertMany(many) => many
            .write_errors
            .as_ref()
            .is_some_and(|errors| errors.iter().any(|w| w.code == DUPLICATE_KEY)),
        _ => false,
    }
}

/// The driver's messages can span several lines of topology detail; one is enough here.
fn first_line(e: &mongodb::error::Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or("").trim();
    let mut short: String = line.chars().take(300).collect();
    if short.len() < line.len() {
        short.push('…');
    }
    short
}

/// `mongodb://user:secret@host/db` without the user info.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_reach_messages() {
        assert_eq!(
            redact("mongodb://u:p@db.example:27017/latch"),
            "mongodb://db.example:27017/latch"
        );
        assert_eq!(redact("mongodb://127.0.0.1/x"), "mongodb://127.0.0.1/x");
    }

    #[tokio::test]
    async fn connecting_does_not_contact_the_server() {
        let mongo = Mongo::connect("mongodb://127.0.0.1:1/rulesdb")
            .await
            .unwrap();
        assert_eq!(mongo.db.name(), "rulesdb");
        let fallback = Mongo::connect("mongodb://127.0.0.1:1").await.unwrap();
        assert_eq!(fallback.db.name(), DEFAULT_DATABASE);
        assert!(Mongo::connect("postgres://x").await.is_err());
    }
}
