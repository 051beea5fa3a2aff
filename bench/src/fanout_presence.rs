//! The presence fan-out: how fast a tab opening or closing on a page reaches the N tabs already
//! watching it. Per round one more banner socket watches the page and then closes, and each
//! watcher's arrival of the `presence` message with the new count is timed from just before
//! the `watch` was sent (or the socket closed). Rounds are spaced past the proxy's presence
//! interval, so each change is a lone one; changes in a burst are shown within about a second
//! by design (docs/banner.md).

use std::time::{Duration, Instant};

use crate::fanout::{await_all, check, connect, count_in, listen, open_many, Fanout, PAGE};
use crate::BenchError;

/// Longer than the proxy's presence interval (1 s), so each change is shown at once.
const SPACING: Duration = Duration::from_millis(1300);

/// The `count` of a `presence` message, or `None` for any other message.
pub fn presence_count(text: &str) -> Option<u64> {
    count_in(text, "presence", "count")
}

/// `watchers.len()` tabs watch [`PAGE`] (nobody holds it); per round the `visitor` opens a
/// banner on it and closes it again, and every watcher's `presence` message is timed for both.
pub async fn presence_to_watchers(
    port: u16,
    visitor: &str,
    watchers: &[String],
    rounds: usize,
) -> Result<Fanout, BenchError> {
    let sockets = open_many(port, watchers, |_| PAGE.to_string()).await?;
    let n = sockets.len();
    let (mut tasks, mut events) = listen(sockets, presence_count);
    // Everyone sees everyone else once the opening burst has been shown.
    let others = n as u64 - 1;
    await_all(&mut events, n, others, |_| {}).await?;

    let mut latencies_ms = Vec::with_capacity(n * rounds * 2);
    for _ in 0..rounds {
        tokio::time::sleep(SPACING).await;
        let sent = Instant::now();
        let (mut tab, _) = connect(port, visitor, PAGE).await?;
        await_all(&mut events, n, others + 1, |at| {
            latencies_ms.push(at.duration_since(sent).as_secs_f64() * 1000.0)
        })
        .await?;

        tokio::time::sleep(SPACING).await;
        let sent = Instant::now();
        tab.close(None)
            .await
            .map_err(|e| check(format!("closing the visitor's socket: {e}")))?;
        await_all(&mut events, n, others, |at| {
            latencies_ms.push(at.duration_since(sent).as_secs_f64() * 1000.0)
        })
        .await?;
    }
    tasks.abort_all();
    Ok(Fanout {
        watchers: n,
        rounds,
        latencies_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_messages_are_told_apart() {
        assert_eq!(
            presence_count(r#"{"type":"presence","resource":"r","watching":[],"count":7}"#),
            Some(7)
        );
        assert_eq!(presence_count(r#"{"type":"queue","length":1}"#), None);
        assert_eq!(presence_count("not json"), None);
    }
}
