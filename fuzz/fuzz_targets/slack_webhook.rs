//! Slack ingress: the v0 signature verifier never panics, accepts exactly what `sign` produced,
//! and the payload dispatcher maps any body the webhook route parses (JSON, or a form whose
//! `payload` field holds JSON) without panicking, with claim keys that are never empty.
#![no_main]

use libfuzzer_sys::fuzz_target;
use open_cowork_gateway::http::body::parse_request_body;
use open_cowork_gateway::providers::slack::events::{dispatch, team_of, Dispatch};
use open_cowork_gateway::providers::slack::signature::{scope_segment, sign, verify, ReplayCache};

const SECRET: &str = "fuzz-signing-secret";
const NOW_MS: u64 = 1_700_000_000_000;
const FORM: &str = "application/x-www-form-urlencoded";

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else { return };
    // First line: the timestamp header; second: the signature header; the rest: the raw body.
    let mut parts = text.splitn(3, '\n');
    let timestamp = parts.next().unwrap_or("").trim();
    let signature = parts.next().unwrap_or("").trim();
    let body = parts.next().unwrap_or("");
    let _ = verify(SECRET, timestamp, signature, body, NOW_MS);
    if !body.is_empty() && !timestamp.is_empty() {
        let good = sign(SECRET, timestamp, body);
        let fresh =
            timestamp.parse::<f64>().is_ok_and(|t| t.is_finite() && (NOW_MS as f64 / 1000.0 - t).abs() <= 300.0);
        assert_eq!(verify(SECRET, timestamp, &good, body, NOW_MS).is_ok(), fresh);
    }
    let mut replays = ReplayCache::new(2, 3);
    let key = format!("{timestamp}:{signature}");
    if replays.remember(&key, "T", NOW_MS).is_ok() {
        assert!(replays.remember(&key, "T", NOW_MS).is_err());
    }

    // The body as `POST /webhooks/<id>` parses it: Events API posts JSON, interactivity posts a
    // form with a `payload` field; the same bytes are tried both ways.
    for content_type in [Some("application/json"), Some(FORM)] {
        if let Ok(payload) = parse_request_body(body, content_type) {
            check_payload(&payload);
        }
    }
});

fn check_payload(payload: &serde_json::Value) {
    if let Some(team) = team_of(payload) {
        assert!(scope_segment(team).chars().count() <= 256);
    }
    if let Dispatch::Inbound { message, .. } = dispatch("slack", payload, Some("U0BOT"), NOW_MS) {
        assert!(!message.provider_event_id().is_empty());
        assert!(!message.target.chat_id.is_empty());
        if let Some(interaction) = &message.interaction {
            assert!(!interaction.token.is_empty() && !interaction.id.is_empty());
        }
    }
}
