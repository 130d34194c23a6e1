//! The log lines an operator acts on, from the inbound path and the session streams: a Cloud claim
//! retried, a session cursor write that failed, the inbound journal replayed at start. Each is one
//! line with its fields, repeats are held back, and no secret is in them. In process, against the
//! dev Cloud, with the log captured from a subscriber on this thread.

#![cfg(feature = "devcloud")]

use crate::support;

use std::time::Duration;

use open_cowork_gateway::metrics::Stat;
use serde_json::json;
use support::fake_gateway::{self, dev_cloud};
use support::logs::LogCapture;
use support::{eventually, run};

#[test]
fn a_retried_claim_is_one_line_with_its_fields_and_repeats_are_held_back() {
    let log = LogCapture::start();
    run(async {
        let state = support::TempDir::new("logs-claim");
        let (cloud, seeded, base) = dev_cloud().await;
        let running = fake_gateway::start(
            &base,
            &seeded,
            "logs",
            &[("OPEN_COWORK_GATEWAY_STATE_DIR", state.0.to_str().unwrap())],
        )
        .await;
        // The journaled message's claim fails twice (503), then goes through on the third try.
        cloud.faults.borrow_mut().fail_next("claim", 2, 503, None);
        assert_eq!(
            fake_gateway::post(&running, json!({"id": "l-1", "text": "retry my claim", "chatId": "chat-l"})).await,
            202
        );
        eventually("the reply", || {
            running.factory.fake("fake").unwrap().texts().contains(&"echo: retry my claim".to_owned())
        })
        .await;
        let lines = log.lines("retrying");
        assert_eq!(lines.len(), 1, "two retries within a minute are one line: {lines:?}");
        let line = &lines[0];
        for field in ["event", "binding", "reason", "cloud_5xx", "attempt", "next_attempt_in_ms", "l-1", "fake-binding"]
        {
            assert!(line.contains(field), "{field} missing from {line}");
        }
        assert!(!log.text().contains(seeded.gateway_token.as_str()), "no secret in the log");
        running.stop();
    });
}

#[test]
fn a_failed_cursor_write_is_one_line_and_its_in_place_retries_are_render_retries() {
    let log = LogCapture::start();
    run(async {
        let state = support::TempDir::new("logs-cursor");
        let (cloud, seeded, base) = dev_cloud().await;
        let running = fake_gateway::start(
            &base,
            &seeded,
            "logs",
            &[("OPEN_COWORK_GATEWAY_STATE_DIR", state.0.to_str().unwrap())],
        )
        .await;
        // Every try of the first cursor write fails (three in place), later ones go through.
        cloud.faults.borrow_mut().fail_next("cursor", 3, 503, None);
        assert_eq!(
            fake_gateway::post(&running, json!({"id": "c-1", "text": "move my cursor", "chatId": "chat-c"})).await,
            202
        );
        eventually("the failed write's line", || !log.lines("session cursor write failed").is_empty()).await;
        let line = &log.lines("session cursor write failed")[0];
        for field in ["binding", "sequence", "reason", "cloud_5xx", "attempts=3"] {
            assert!(line.contains(field), "{field} missing from {line}");
        }
        assert_eq!(running.metrics.get(Stat::SessionRenderRetries), 2, "two tries retried in place");
        assert_eq!(running.metrics.get(Stat::CursorPersistenceFailures), 1);
        running.stop();
    });
}

#[test]
fn the_journal_replay_at_start_says_how_many_messages() {
    let log = LogCapture::start();
    run(async {
        let state = support::TempDir::new("logs-replay");
        let state_dir = state.0.to_str().unwrap().to_owned();
        let (cloud, seeded, base) = dev_cloud().await;
        let first = fake_gateway::start(&base, &seeded, "logs", &[("OPEN_COWORK_GATEWAY_STATE_DIR", &state_dir)]).await;
        // Held between the answer and the prompt, then killed.
        cloud.faults.borrow_mut().delay("claim", Duration::from_secs(5));
        for n in 0..2 {
            let body = json!({"id": format!("r-{n}"), "text": "replay me", "chatId": format!("chat-r-{n}")});
            assert_eq!(fake_gateway::post(&first, body).await, 202);
        }
        first.stop();
        cloud.faults.borrow_mut().delay("claim", Duration::ZERO);
        assert!(log.lines("replaying").is_empty());
        let second =
            fake_gateway::start(&base, &seeded, "logs", &[("OPEN_COWORK_GATEWAY_STATE_DIR", &state_dir)]).await;
        eventually("the replay's line", || !log.lines("replaying").is_empty()).await;
        let lines = log.lines("replaying");
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("messages=2"), "{}", lines[0]);
        second.stop();
    });
}
