//! What one banner socket tells its viewer about a resource's wait queue: the `queue` and
//! `offer` messages, worked out from the queue a `QueueChanged` event (or a read) carries.
//!
//! Pure: the socket decides when to send them and keeps its own record of whether its viewer
//! waits or holds the offer; this module only says what the viewer sees.

use serde_json::{json, Value};
use store::QueueState;

use crate::time_fmt::rfc3339;

/// Where the viewer (owner key `me`) stands in `state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Standing {
    /// 1-based place in line, if the viewer waits.
    pub position: Option<usize>,
    /// Whether the resource is offered to the viewer.
    pub offered: bool,
}

pub fn standing(state: &QueueState, me: &str) -> Standing {
    Standing {
        position: state
            .waiting
            .iter()
            .position(|h| h.owner_key() == me)
            .map(|i| i + 1),
        offered: state
            .offer
            .as_ref()
            .is_some_and(|o| o.holder.owner_key() == me),
    }
}

/// The `queue` message. Only the lock's holder (`holder`) is told who waits; everyone else
/// sees their own place and the length of the line.
pub fn queue_json(resource: &str, state: &QueueState, me: &str, holder: bool) -> Value {
    let waiting: Vec<Value> = if holder {
        state
            .waiting
            .iter()
            .map(|h| json!({ "id": h.user, "name": h.name }))
            .collect()
    } else {
        Vec::new()
    };
    json!({
        "type": "queue",
        "resource": resource,
        "position": standing(state, me).position,
        "length": state.waiting.len(),
        "waiting": waiting,
    })
}

/// The `offer` message: the standing offer (`until` as RFC 3339, `you` when it is the viewer's),
/// or `until: null` once there is none.
pub fn offer_json(resource: &str, state: &QueueState, me: &str) -> Value {
    json!({
        "type": "offer",
        "resource": resource,
        "until": state.offer.as_ref().map(|o| rfc3339(o.until)),
        "you": standing(state, me).offered,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::{Holder, Offer};

    fn person(id: &str) -> Holder {
        Holder {
            user: id.to_owned(),
            name: id.to_uppercase(),
            session: None,
        }
    }

    #[test]
    fn only_the_holder_learns_who_waits() {
        let state = QueueState {
            waiting: vec![person("bob"), person("carol")],
            offer: None,
        };
        let holder = queue_json("doc:1", &state, "alice", true);
        assert_eq!(holder["waiting"][1]["name"], "CAROL");
        assert_eq!(holder["position"], Value::Null);
        let carol = queue_json("doc:1", &state, "carol", false);
        assert_eq!(carol["position"], 2);
        assert_eq!(carol["length"], 2);
        assert_eq!(carol["waiting"], json!([]));
    }

    #[test]
    fn the_offer_says_whose_it_is() {
        let state = QueueState {
            waiting: vec![person("carol")],
            offer: Some(Offer {
                holder: person("bob"),
                until: 1_700_000_060_000,
            }),
        };
        assert_eq!(offer_json("doc:1", &state, "bob")["you"], true);
        assert_eq!(offer_json("doc:1", &state, "carol")["you"], false);
        assert!(offer_json("doc:1", &state, "carol")["until"].is_string());
        assert_eq!(
            offer_json("doc:1", &QueueState::default(), "bob")["until"],
            Value::Null
        );
        assert_eq!(
            standing(&state, "carol"),
            Standing {
                position: Some(1),
                offered: false
            }
        );
    }
}
