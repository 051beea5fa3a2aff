//! Many people reaching for one free resource at the same instant: exactly one gets it.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::Value;
use tests::fixtures::DOC_EDIT;
use tests::{token, LatchBuilder, Upstream};
use tokio::sync::Barrier;

const CLAIMANTS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_claimants_one_winner() {
    let upstream = Upstream::start().await;
    let latch = LatchBuilder::new(upstream.port()).rules(DOC_EDIT).start();
    let url = latch.url("/echo/docs/1/edit");
    // One connection per claimant, opened before the start signal, so the requests really
    // arrive together instead of queueing behind a small pool.
    let tokens: Vec<String> = (0..CLAIMANTS)
        .map(|i| token(&format!("user{i}"), &format!("User {i}"), &[]))
        .collect();
    let barrier = Arc::new(Barrier::new(CLAIMANTS));
    let mut tasks = Vec::with_capacity(CLAIMANTS);
    for tok in tokens {
        let url = url.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let http = tests::client();
            // Warm the connection on an unmatched path first.
            let warm = http
                .get(url.replace("/docs/1/edit", "/warm"))
                .send()
                .await
                .unwrap();
            assert_eq!(warm.status(), StatusCode::OK);
            barrier.wait().await;
            let resp = http.get(&url).bearer_auth(tok).send().await.unwrap();
            let status = resp.status();
            let body: Value = resp.json().await.unwrap();
            (status, body)
        }));
    }
    let mut results = Vec::with_capacity(CLAIMANTS);
    for task in tasks {
        results.push(task.await.unwrap());
    }

    let winners: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| s.is_success())
        .map(|(_, b)| b)
        .collect();
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let winner = winners[0]["headers"]["x-latch-user"]
        .as_str()
        .expect("the winner reached the app with its identity")
        .to_string();
    let fence = winners[0]["headers"]["x-latch-fence"].clone();

    for (status, body) in &results {
        if status.is_success() {
            continue;
        }
        assert_eq!(*status, StatusCode::LOCKED, "{body}");
        assert_eq!(body["holder"]["id"], winner.as_str(), "{body}");
        assert_eq!(body["resource"], "doc:1");
    }

    // The store agrees with what the winner was told.
    let status: Value = tests::client()
        .get(latch.url("/__latch/status?path=/echo/docs/1/edit"))
        .bearer_auth(token("observer", "Observer", &[]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["holder"]["id"], winner.as_str());
    assert_eq!(status["fence"].to_string(), fence.as_str().unwrap());
}
