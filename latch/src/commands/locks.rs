//! `latch locks list|release`: the live locks, and breaking them, from a terminal, through the
//! control plane's API (`/api/v1/locks`).

use std::cmp::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use super::api::{segment, Api, Remote};
use super::table::{ago, Table};

#[derive(Subcommand)]
pub enum Action {
    /// Every live lock on every instance, resources in natural order (doc:2 before doc:10).
    List,
    /// Force-release locks: the named resources, and with --user every lock that user holds.
    /// Holders and watchers are told through their banners, and the audit trail records it.
    /// A lock of the user's that changed hands after the list was read is left alone.
    Release {
        resources: Vec<String>,
        /// Release every lock this user (the holder's id) holds.
        #[arg(long)]
        user: Option<String>,
    },
}

pub fn run(remote: Remote, action: Action) -> Result<(), Vec<String>> {
    let api = Api::connect(&remote)?;
    match action {
        Action::List => list(&api, remote.json),
        Action::Release { resources, user } => release(&api, remote.json, resources, user),
    }
}

fn list(api: &Api, as_json: bool) -> Result<(), Vec<String>> {
    let locks = fetch(api)?;
    if as_json {
        println!("{}", json!({ "locks": locks }));
        return Ok(());
    }
    if locks.is_empty() {
        println!("no locks");
        return Ok(());
    }
    let now = now_ms();
    let mut table = Table::new(["RESOURCE", "HOLDER", "SINCE", "EXPIRES", "RULE"]);
    for lock in &locks {
        let holder = &lock["holder"];
        let id = holder["id"].as_str().unwrap_or_default();
        let name = holder["name"].as_str().unwrap_or_default();
        let who = if name.is_empty() || name == id {
            id.to_owned()
        } else {
            format!("{id} ({name})")
        };
        let since = lock["since_ms"].as_u64().unwrap_or(now);
        let expires = lock["expires_ms"].as_u64().unwrap_or(now);
        table.row([
            text(&lock["resource"]),
            who,
            ago(now.saturating_sub(since), "ago"),
            if expires > now {
                ago(expires - now, "left")
            } else {
                "lapsed".to_owned()
            },
            text(&lock["rule"]),
        ]);
    }
    print!("{table}");
    Ok(())
}

/// Every live lock, in natural order of resource.
fn fetch(api: &Api) -> Result<Vec<Value>, Vec<String>> {
    let answer = api
        .call(Method::GET, "/api/v1/locks", None, None)
        .map_err(|e| vec![e])?;
    let mut locks = answer.body["locks"]
        .as_array()
        .cloned()
        .ok_or_else(|| vec!["GET /api/v1/locks: the answer has no `locks` list".to_owned()])?;
    locks.sort_by(|a, b| natural(&text(&a["resource"]), &text(&b["resource"])));
    Ok(locks)
}

/// Releases the named resources whoever holds them, and each lock `user` holds only while
/// they hold it: its DELETE carries the lock's ETag (`If-Match`), so one that changed hands
/// since the list was read is refused (412) and reported.
fn release(
    api: &Api,
    as_json: bool,
    resources: Vec<String>,
    user: Option<String>,
) -> Result<(), Vec<String>> {
    if resources.is_empty() && user.is_none() {
        return Err(vec![
            "name the resources to release, or --user ID for all of a user's locks".to_owned(),
        ]);
    }
    // Each resource with the ETag its release is conditional on, if any.
    let mut targets: Vec<(String, Option<String>)> =
        resources.into_iter().map(|r| (r, None)).collect();
    if let Some(user) = &user {
        let held: Vec<(String, Option<String>)> = fetch(api)?
            .iter()
            .filter(|lock| lock["holder"]["id"].as_str() == Some(user))
            .map(|lock| {
                let etag = lock["etag"].as_str().map(|tag| format!("\"{tag}\""));
                (text(&lock["resource"]), etag)
            })
            .filter(|(resource, _)| !targets.iter().any(|(named, _)| named == resource))
            .collect();
        if held.is_empty() && targets.is_empty() {
            println!("{user} holds no locks");
            return Ok(());
        }
        targets.extend(held);
    }
    targets.dedup_by(|a, b| a.0 == b.0);
    let mut released = Vec::new();
    let mut problems = Vec::new();
    for (resource, etag) in &targets {
        let path = format!("/api/v1/locks/{}", segment(resource));
        match api.call(Method::DELETE, &path, etag.as_deref(), None) {
            Ok(answer) => {
                let lock = answer.body["released"].clone();
                if !as_json {
                    let holder = lock["holder"]["id"].as_str().unwrap_or("?");
                    println!("released {resource} (held by {holder})");
                }
                released.push(lock);
            }
            Err(e) => problems.push(e),
        }
    }
    if as_json {
        println!("{}", json!({ "released": released, "errors": problems }));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

/// Natural order: runs of digits compare as numbers, so `doc:2` comes before `doc:10`.
fn natural(a: &str, b: &str) -> Ordering {
    alphanumeric_sort::compare_str(a, b)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_sort_naturally() {
        let mut names = vec!["doc:10", "doc:2", "page:1", "doc:1", "doc:02x"];
        names.sort_by(|a, b| natural(a, b));
        assert_eq!(names, ["doc:1", "doc:2", "doc:02x", "doc:10", "page:1"]);
    }
}
