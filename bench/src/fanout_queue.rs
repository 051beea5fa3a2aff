//! The wait-queue fan-out: how fast a change of a page's line reaches N watchers. Watchers
//! are banner-like sockets on a held page; per round one more socket joins the line and then
//! leaves it, and each watcher's arrival of the `queue` message showing the new length is timed
//! from just before the join (or leave) was sent.

use std::time::{Duration, Instant};

use futures::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::fanout::{
    await_all, check, connect, count_in, expect_status, listen, open_many, Fanout, PAGE, PREFIX,
    RESOURCE,
};
use crate::BenchError;

/// The `length` of a `queue` message, or `None` for any other message.
pub fn queue_length(text: &str) -> Option<u64> {
    count_in(text, "queue", "length")
}

/// `tokens.len()` watchers on a page `holder` holds; per round the `waiter` socket joins the
/// line and leaves it again, and every watcher's `queue` message is timed for both changes.
pub async fn queue_to_watchers(
    port: u16,
    holder: &str,
    waiter: &str,
    tokens: &[String],
    rounds: usize,
) -> Result<Fanout, BenchError> {
    let page = PAGE;
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| check(format!("http client: {e}")))?;
    expect_status(
        client
            .get(format!("http://127.0.0.1:{port}{page}"))
            .bearer_auth(holder),
        200,
        "holder's claim",
    )
    .await?;
    let sockets = open_many(port, tokens, |_| page.to_string()).await?;
    let watchers = sockets.len();
    let (mut tasks, mut events) = listen(sockets, queue_length);

    let (mut line, _) = connect(port, waiter, page).await?;
    let join = json!({ "type": "join_queue", "resource": RESOURCE }).to_string();
    let leave = json!({ "type": "leave_queue", "resource": RESOURCE }).to_string();
    let mut latencies_ms = Vec::with_capacity(watchers * rounds * 2);
    for _ in 0..rounds {
        for (message, want) in [(&join, 1), (&leave, 0)] {
            // Let the previous change's traffic settle so each one is timed on a quiet proxy.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let sent = Instant::now();
            line.send(Message::Text(message.as_str().into()))
                .await
                .map_err(|e| check(format!("waiter's socket: {e}")))?;
            await_all(&mut events, watchers, want, |at| {
                latencies_ms.push(at.duration_since(sent).as_secs_f64() * 1000.0)
            })
            .await?;
        }
    }
    tasks.abort_all();
    let _ = client
        .post(format!("http://127.0.0.1:{port}{PREFIX}/release"))
        .bearer_auth(holder)
        .body(json!({ "resource": RESOURCE }).to_string())
        .send()
        .await;
    Ok(Fanout {
        watchers,
        rounds,
        latencies_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_messages_are_told_apart() {
        assert_eq!(
            queue_length(
                r#"{"type":"queue","resource":"r","position":null,"length":3,"waiting":[]}"#
            ),
            Some(3)
        );
        assert_eq!(queue_length(r#"{"type":"lock","state":"free"}"#), None);
        assert_eq!(queue_length("not json"), None);
    }
}
