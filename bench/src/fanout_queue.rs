//! The wait-queue fan-out: how fast a change of a page's line reaches N watchers. Watchers
//! are banner-like sockets on a held page; per round one more socket joins the line and then
//! leaves it, and each watcher's arrival of the `queue` message showing the new length is timed
//! from just before the join (or leave) was sent.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::fanout::{check, connect, expect_status, open_many, Fanout, PREFIX};
use crate::BenchError;

/// How long all watchers together may take to hear of one change.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(20);

/// The `length` of a `queue` message, or `None` for any other message.
pub fn queue_length(text: &str) -> Option<u64> {
    let v: Value = serde_json::from_str(text).ok()?;
    if v.get("type")?.as_str()? != "queue" {
        return None;
    }
    v.get("length")?.as_u64()
}

/// Waits until every watcher reported a line of `want` people at least once.
async fn await_all(
    events: &mut mpsc::UnboundedReceiver<(usize, u64, Instant)>,
    watchers: usize,
    want: u64,
    mut on_event: impl FnMut(Instant),
) -> Result<(), BenchError> {
    let mut seen = HashSet::with_capacity(watchers);
    let deadline = tokio::time::Instant::now() + CHANGE_TIMEOUT;
    while seen.len() < watchers {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some((who, length, at))) => {
                if length == want && seen.insert(who) {
                    on_event(at);
                }
            }
            Ok(None) => return Err(check("every watcher socket closed")),
            Err(_) => {
                return Err(check(format!(
                    "only {} of {watchers} watchers saw a line of {want} within {CHANGE_TIMEOUT:?}",
                    seen.len()
                )))
            }
        }
    }
    Ok(())
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
    let page = "/watch/2/asset.bin";
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
    let (tx, mut events) = mpsc::unbounded_channel();
    let mut tasks = JoinSet::new();
    for (who, mut ws) in sockets.into_iter().enumerate() {
        let tx = tx.clone();
        tasks.spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Text(text) = msg {
                    if let Some(length) = queue_length(&text) {
                        let _ = tx.send((who, length, Instant::now()));
                    }
                }
            }
        });
    }
    drop(tx);

    let (mut line, _) = connect(port, waiter, page).await?;
    let join = r#"{"type":"join_queue","resource":"watch:2"}"#;
    let leave = r#"{"type":"leave_queue","resource":"watch:2"}"#;
    let mut latencies_ms = Vec::with_capacity(watchers * rounds * 2);
    for _ in 0..rounds {
        for (message, want) in [(join, 1), (leave, 0)] {
            // Let the previous change's traffic settle so each one is timed on a quiet proxy.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let sent = Instant::now();
            line.send(Message::Text(message.into()))
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
        .body(r#"{"resource":"watch:2"}"#)
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
