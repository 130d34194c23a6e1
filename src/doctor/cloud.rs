//! The Cloud checks: reachable (and its TLS certificate trusted), the service token accepted,
//! each configured channel binding granted to it, and the clock against Cloud's `Date` header
//! (Slack and relay signatures carry timestamps and are refused beyond five minutes of skew).
//! One read-only call per binding: the delivery listing, limited to one entry.

use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, DATE, USER_AGENT};
use http::{Request, StatusCode};
use http_body_util::Full;

use super::DoctorCheck;
use crate::config::redact::redact_text;
use crate::config::Config;
use crate::net::https::HttpsClient;

/// Beyond this, signed webhooks (Slack, relays) are refused as replays.
const MAX_SKEW: Duration = Duration::from_secs(5 * 60);

/// What one listing call answered.
struct Answer {
    status: StatusCode,
    /// Cloud's clock, from `Date`, in epoch milliseconds.
    date_ms: Option<u64>,
}

/// Every Cloud check, in order; stops at the first that makes the rest meaningless.
pub async fn check(config: &Config, http: &HttpsClient) -> Vec<DoctorCheck> {
    let base = config.cloud.base_url.trim_end_matches('/');
    let bindings = config.channel_binding_ids();
    let first = bindings.first().map_or("", |b| b.as_str());
    let answer = match list(config, http, first).await {
        Ok(answer) => answer,
        Err(problem) => return vec![DoctorCheck::fail(format!("Cloud {base}"), problem)],
    };
    let transport = if base.starts_with("https://") { "HTTPS, certificate valid" } else { "plain HTTP" };
    let mut checks = vec![DoctorCheck::pass(format!("Cloud {base}"), format!("reachable over {transport}"))];
    checks.push(clock(answer.date_ms));
    if matches!(answer.status, StatusCode::UNAUTHORIZED) {
        checks.push(DoctorCheck::fail(
            "service token",
            "Cloud rejects it: copy the gateway token from Cloud into OPEN_COWORK_GATEWAY_SERVICE_TOKEN.",
        ));
        return checks;
    }
    checks.push(DoctorCheck::pass("service token", "accepted"));
    for (index, binding) in bindings.iter().enumerate() {
        let status = if index == 0 { Ok(answer.status) } else { list(config, http, binding).await.map(|a| a.status) };
        let name = format!("channel binding {binding}");
        checks.push(match status {
            Ok(status) if status.is_success() => DoctorCheck::pass(name, "granted to this token"),
            Ok(StatusCode::FORBIDDEN | StatusCode::NOT_FOUND) => DoctorCheck::fail(
                name,
                "not granted to this token (or not active): grant it in Cloud, or fix the provider's channelBindingId.",
            ),
            Ok(status) => DoctorCheck::fail(name, format!("Cloud answered {status}.")),
            Err(problem) => DoctorCheck::fail(name, problem),
        });
    }
    checks
}

fn clock(date_ms: Option<u64>) -> DoctorCheck {
    let Some(cloud_ms) = date_ms else {
        return DoctorCheck::fail("clock", "Cloud sent no Date header to compare with.");
    };
    let local_ms = crate::time::now_ms();
    let skew = Duration::from_millis(local_ms.abs_diff(cloud_ms));
    let direction = if local_ms > cloud_ms { "ahead of" } else { "behind" };
    if skew > MAX_SKEW {
        DoctorCheck::fail(
            "clock",
            format!("{} s {direction} Cloud: signed webhooks (Slack, relays) are refused beyond 300 s. Enable time sync (systemd-timesyncd, chrony).", skew.as_secs()),
        )
    } else {
        DoctorCheck::pass("clock", format!("within {} s of Cloud", skew.as_secs().max(1)))
    }
}

/// `GET /api/channels/deliveries?channelBindingId=…&limit=1` with the service token.
async fn list(config: &Config, http: &HttpsClient, binding: &str) -> Result<Answer, String> {
    let query = crate::cloud::client::query_string([("channelBindingId", binding), ("limit", "1")]);
    let uri = format!("{}/api/channels/deliveries{query}", config.cloud.base_url.trim_end_matches('/'));
    let request = Request::get(uri)
        .header(AUTHORIZATION, format!("Bearer {}", config.cloud.service_token.expose()))
        .header(USER_AGENT, concat!("open-cowork-gateway/", env!("CARGO_PKG_VERSION"), " doctor"))
        .body(Full::new(Bytes::new()))
        .map_err(|_| "the service token is not a valid header value: set it again.".to_owned())?;
    let timeout = Duration::from_millis(config.cloud.request_timeout_ms);
    let response = match tokio::time::timeout(timeout, http.request(request)).await {
        Err(_) => return Err(format!("no answer within {} ms: check the network path to Cloud.", timeout.as_millis())),
        Ok(Err(error)) => return Err(unreachable(&error)),
        Ok(Ok(response)) => response,
    };
    let date_ms = response.headers().get(DATE).and_then(|d| d.to_str().ok()).and_then(parse_http_date);
    Ok(Answer { status: response.status(), date_ms })
}

/// The error's whole chain (hyper's own text says little), redacted, with what to do.
fn unreachable(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    let lower = text.to_ascii_lowercase();
    let fix = if lower.contains("certificate") || lower.contains("tls") {
        "Cloud's TLS certificate is not trusted: check the URL, or give a private CA with OPEN_COWORK_GATEWAY_CA_FILE"
    } else {
        "check OPEN_COWORK_CLOUD_BASE_URL, DNS and the firewall"
    };
    format!("unreachable ({}): {fix}.", redact_text(&text))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110's preferred form) into epoch milliseconds.
fn parse_http_date(text: &str) -> Option<u64> {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else { return None };
    let month = MONTHS.iter().position(|m| m == month)? + 1;
    crate::time::parse_iso(&format!("{year}-{month:02}-{day:0>2}T{time}Z"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates() {
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777_000));
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 CET"), None);
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn skew_beyond_five_minutes_fails() {
        let now = crate::time::now_ms();
        assert!(clock(Some(now - 60_000)).ok);
        assert!(!clock(Some(now - 400_000)).ok);
        assert!(!clock(Some(now + 400_000)).ok);
        assert!(!clock(None).ok);
    }
}
