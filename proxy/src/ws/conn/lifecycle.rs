//! The parts of a banner socket's protocol that follow the person rather than the lock: which
//! page load (tab) it is, who else watches (presence), and whether the holder is still there
//! (activity, the idle warning and the idle release).

use serde_json::{json, Value};
use store::ReleaseReason;

use super::{error_json, Conn, Watched};
use crate::actions::PRESENCE_TTL;
use crate::presence::{fingerprint, People};
use crate::time_fmt::{now_ms, rfc3339};

use super::super::transport::{send, send_text, Ws};

/// Most people a `presence` message names; `count` says how many there are in all.
pub const MAX_WATCHING_SHOWN: usize = 20;

/// The wire name of a release reason, as `released` messages carry it.
pub fn reason_name(reason: &ReleaseReason) -> &'static str {
    match reason {
        ReleaseReason::Client => "client",
        ReleaseReason::Grace => "grace",
        ReleaseReason::Expired => "expired",
        ReleaseReason::TakenOver => "taken_over",
        ReleaseReason::Forced { .. } => "forced",
        ReleaseReason::Idle => "idle",
    }
}

/// The `presence` message: people other than the holder and the viewer with a banner on the
/// resource, each once.
pub fn presence_json(resource: &str, people: &People, holder: Option<&str>, viewer: &str) -> Value {
    let (shown, count) = people.others(holder, viewer, MAX_WATCHING_SHOWN);
    let watching: Vec<Value> = shown
        .iter()
        .map(|(id, name)| json!({ "id": id, "name": name }))
        .collect();
    json!({ "type": "presence", "resource": resource, "watching": watching, "count": count })
}

impl Conn {
    /// Takes the banner's tab id for this socket. A socket is one page load; a second,
    /// different id is ignored (the first one is what the page's beacon will name).
    pub(super) async fn set_tab(&mut self, tab: String) {
        if !self.tab.starts_with('~') || self.tab == tab {
            return;
        }
        let old = std::mem::replace(&mut self.tab, tab);
        // Resources watched under the made-up id move to the banner's own.
        for w in &self.watched {
            let _ = self
                .latch
                .store_op(
                    "presence_leave",
                    self.latch.store.presence_leave(&w.resource, &old),
                )
                .await;
        }
        self.refresh_presence().await;
    }

    pub(super) async fn join_presence(&self, resource: &str) {
        let Some(w) = self.watched.iter().find(|w| w.resource == resource) else {
            return;
        };
        let holder = self.holder(w);
        let joined = self
            .latch
            .store_op(
                "presence_join",
                self.latch
                    .store
                    .presence_join(resource, &self.tab, &holder, PRESENCE_TTL),
            )
            .await;
        if let Err(e) = joined {
            tracing::debug!(resource, error = %e, "presence not recorded");
        }
    }

    /// Joins every watched resource again, which keeps this tab present (the socket's ping).
    pub(super) async fn refresh_presence(&self) {
        for w in &self.watched {
            self.join_presence(&w.resource).await;
        }
    }

    /// This tab leaves every resource it watched (the socket is closing).
    pub(super) async fn leave_presence(&self) {
        for w in &self.watched {
            let _ = self
                .latch
                .store_op(
                    "presence_leave",
                    self.latch.store.presence_leave(&w.resource, &self.tab),
                )
                .await;
        }
    }

    /// The person did something: every lock they hold here records it, and a standing idle
    /// warning is lifted.
    pub(super) async fn activity(&mut self, ws: &mut Ws) -> bool {
        for i in 0..self.watched.len() {
            if !self.watched[i].held {
                continue;
            }
            let owner = self.owner_key(&self.watched[i]);
            let resource = self.watched[i].resource.clone();
            let touched = self
                .latch
                .store_op("touch", self.latch.store.touch(&resource, &owner))
                .await;
            match touched {
                Ok(Some(lock)) => {
                    let w = &mut self.watched[i];
                    w.active = Some(lock.active);
                    if std::mem::take(&mut w.warned)
                        && !send(ws, json!({ "type": "idle_cleared", "resource": resource })).await
                    {
                        return false;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    return send(ws, error_json("store_unavailable", &e.to_string())).await;
                }
            }
        }
        true
    }

    /// Once a second: presence messages that are due, then the idle check of held locks.
    pub(super) async fn tick(&mut self, ws: &mut Ws) -> bool {
        for i in 0..self.watched.len() {
            if !self.send_presence(ws, i).await {
                return false;
            }
            if !self.check_idle(ws, i).await {
                return false;
            }
        }
        true
    }

    /// Sends the `presence` message of the i-th watched resource if one is due (the holder
    /// changed, or the hub noted a presence change since the last read) and it changed, from
    /// this instance's shared read ([`crate::presence`]). A read older than the change it is
    /// due for leaves the message due, for the next tick.
    pub(super) async fn send_presence(&mut self, ws: &mut Ws, i: usize) -> bool {
        let w = &mut self.watched[i];
        let noted = self.latch.hub.presence.changed_at(&w.resource);
        if let Some(changed) = noted.filter(|&c| w.presence_read.is_none_or(|r| c > r)) {
            w.presence_due = Some(w.presence_due.map_or(changed, |due| due.min(changed)));
        }
        let Some(since) = w.presence_due else {
            return true;
        };
        let resource = w.resource.clone();
        let read = self
            .latch
            .hub
            .presence
            .get(&resource, since, async {
                self.latch
                    .store_op("presence", self.latch.store.presence(&resource))
                    .await
            })
            .await;
        let Ok(snapshot) = read else {
            // Shown again at the next change; presence is only informative.
            self.watched[i].presence_due = None;
            return true;
        };
        let w = &mut self.watched[i];
        if snapshot.started >= since {
            w.presence_due = None;
        }
        w.presence_read = Some(snapshot.started);
        let (holder, viewer) = (w.holder.as_deref(), self.identity.user.as_str());
        let render = || presence_json(&resource, &snapshot.people, holder, viewer).to_string();
        // Most watchers of a busy page are sent the same message: it is made once per read.
        let (text, fingerprint) = match snapshot.shared(holder, viewer, MAX_WATCHING_SHOWN, render)
        {
            Some(shared) => shared,
            None => {
                let text = render();
                let fingerprint = fingerprint(&text);
                (text.into(), fingerprint)
            }
        };
        if w.presence_sent == Some(fingerprint) {
            return true;
        }
        w.presence_sent = Some(fingerprint);
        send_text(ws, &text).await
    }

    /// Warns a holder whose last activity is older than idle − warning, lifts the warning when
    /// activity came back, and releases the lock (`Idle`) once the idle time has passed with
    /// no activity since — the store checks that last part atomically.
    async fn check_idle(&mut self, ws: &mut Ws, i: usize) -> bool {
        let w: &Watched = &self.watched[i];
        let (Some(idle), Some(active), true) = (w.idle, w.active, w.held) else {
            return true;
        };
        let idle_ms = millis(idle);
        let release_at = active.saturating_add(idle_ms);
        let warn_at = release_at.saturating_sub(millis(w.idle_warning));
        let now = now_ms();
        let resource = w.resource.clone();
        if now >= release_at {
            let owner = self.owner_key(w);
            let released = self
                .latch
                .store_op(
                    "release_idle",
                    self.latch.store.release_idle(&resource, &owner, active + 1),
                )
                .await;
            if let Ok(None) = released {
                // Activity elsewhere since: read the lock's activity again.
                if let Ok(lock) = self.current(&resource).await {
                    self.watched[i].active = lock.map(|l| l.active);
                }
            } else if let Ok(Some(lock)) = released {
                tracing::info!(resource = %resource, user = %lock.holder.user, "released: the holder was idle");
            }
            return true;
        }
        let w = &mut self.watched[i];
        if now >= warn_at && !w.warned {
            w.warned = true;
            return send(
                ws,
                json!({ "type": "idle_warning", "resource": resource, "release_at": rfc3339(release_at) }),
            )
            .await;
        }
        if now < warn_at && w.warned {
            w.warned = false;
            return send(ws, json!({ "type": "idle_cleared", "resource": resource })).await;
        }
        true
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::tab as present;

    #[test]
    fn presence_names_others_once_without_the_holder_or_the_viewer() {
        let present = [
            present("t1", "alice"),
            present("t2", "carol"),
            present("t3", "carol"),
            present("t4", "bob"),
            present("t5", "dave"),
        ];
        let msg = presence_json("doc:1", &People::new(&present), Some("alice"), "bob");
        assert_eq!(msg["type"], "presence");
        assert_eq!(
            msg["watching"],
            json!([{"id": "carol", "name": "CAROL"}, {"id": "dave", "name": "DAVE"}])
        );
        assert_eq!(msg["count"], 2);
    }
}
