//! `GET /status`: one server-rendered HTML page for an operator who would rather look than read
//! JSON: version, uptime, Cloud, each channel, session streams, the last hour's deliveries,
//! memory and the last operator events. No JavaScript and no external assets (an appliance on a
//! LAN may have no internet, and a page that loads nothing cannot leak anything); a meta refresh
//! keeps it current. Same access rule as `/diagnostics`. Every value is HTML-escaped, free text is
//! redacted as in `/diagnostics`, and nothing the page shows is a credential.

use std::fmt::Write;

use super::operator::RouteResult;
use super::response::{self, HttpError, ADMIN_REQUIRED};
use super::state::HttpState;
use crate::config::redact::redact_text;
use crate::logging::{last_problem, recent, RecentEvent};
use crate::metrics::{process, Stat};
use crate::util::markup::escape_html;
use http::StatusCode;

const STATUS_DISABLED: HttpError = HttpError::written(StatusCode::NOT_FOUND, "Diagnostics are disabled.");
const HTML_CONTENT_TYPE: &str = "text/html; charset=utf-8";
/// Seconds between the page's own reloads.
const REFRESH_SECONDS: u32 = 15;

const STYLE: &str = "body{font:15px/1.4 system-ui,sans-serif;margin:0 auto;max-width:60em;padding:.5em;color:#222}\
h1{font-size:1.3em}h2{font-size:1.1em;margin:1.2em 0 .3em}h3{font-size:1em;margin:.8em 0 .2em}table{border-collapse:collapse;width:100%}\
td{border-bottom:1px solid #ddd;padding:.25em .4em;text-align:left;vertical-align:top}td:first-child{width:34%}\
.ok{color:#070}.bad{color:#b00}.muted{color:#777}small{color:#555}td{overflow-wrap:anywhere}.n{white-space:nowrap}";

/// Disabled with `/diagnostics`, checked before authorization as there.
pub fn status(state: &HttpState, admin: impl FnOnce() -> bool) -> RouteResult {
    if !state.config.diagnostics_enabled {
        return Err(STATUS_DISABLED);
    }
    if !admin() {
        return Err(ADMIN_REQUIRED);
    }
    state.registry.sync_metrics();
    let mut response = response::text(StatusCode::OK, HTML_CONTENT_TYPE, render(state));
    let headers = response.headers_mut();
    headers.insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    headers.insert(
        http::header::CONTENT_SECURITY_POLICY,
        http::HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    Ok(response)
}

/// The whole page.
pub fn render(state: &HttpState) -> String {
    let mut page = String::with_capacity(8 * 1024);
    let ready = state.readiness.is_ready();
    let _ = write!(
        page,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\"><title>Open Cowork gateway status</title>\
         <style>{STYLE}</style></head><body><h1>Open Cowork gateway <small>{}</small></h1>\
         <p>{} · up {} · instance {}</p>",
        escape_html(crate::VERSION),
        verdict(ready, "ready", "not ready"),
        duration(state.metrics.uptime().as_secs()),
        escape_html(&state.config.instance_id),
    );
    write_cloud(&mut page, state);
    write_channels(&mut page, state);
    write_load(&mut page, state);
    write_events(&mut page, &recent());
    let _ = write!(page, "<p class=\"muted\">Refreshes every {REFRESH_SECONDS} s.</p></body></html>");
    page
}

fn verdict(ok: bool, yes: &str, no: &str) -> String {
    if ok {
        format!("<b class=\"ok\">✓ {yes}</b>")
    } else {
        format!("<b class=\"bad\">✗ {no}</b>")
    }
}

fn duration(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

/// `03:10:00 UTC (5 min ago)` (the date too when older than a day), or a dash.
fn when(ms: Option<u64>) -> String {
    let Some(ms) = ms else { return "<span class=\"muted\">–</span>".into() };
    let iso = crate::time::iso(ms);
    let ago = crate::time::now_ms().saturating_sub(ms) / 1000;
    let day = if ago >= 86_400 { format!("{} ", &iso[..10]) } else { String::new() };
    format!("<span class=\"n\">{day}{} UTC</span> <small>({} ago)</small>", &iso[11..19], duration(ago))
}

fn write_cloud(page: &mut String, state: &HttpState) {
    let _ = write!(page, "<h2>Cloud</h2><p>{}</p><table>", escape_html(&redact_text(&state.config.cloud.base_url)));
    for condition in state.readiness.conditions() {
        let reason = condition.reason.as_deref().map(redact_text).unwrap_or_default();
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{} <small>{}</small></td></tr>",
            escape_html(&condition.name.replace('_', " ")),
            verdict(condition.ok, "ok", "failing"),
            escape_html(&reason)
        );
    }
    page.push_str("</table>");
}

fn write_channels(page: &mut String, state: &HttpState) {
    page.push_str("<h2>Channels</h2>");
    // One small table per channel rather than one wide table: a phone shows two columns well.
    for entry in state.registry.status_json() {
        let text = |key: &str| entry[key].as_str().unwrap_or_default().to_owned();
        let flag = |key: &str| entry[key].as_bool().unwrap_or(false);
        let id = text("id");
        let (inbound, sent) = state.metrics.provider_last_activity(&id);
        let problem = match (entry["error"].as_str(), last_problem(&id)) {
            (Some(now), _) => format!("<span class=\"bad\">{}</span> <small>(now)</small>", escape_html(now)),
            (None, Some(event)) => format!("{}<br>{}", escape_html(&event.text), when(Some(event.at_ms))),
            (None, None) => "<span class=\"muted\">–</span>".into(),
        };
        let _ = write!(
            page,
            "<h3>{} <small>{}</small></h3><table><tr><td>Status</td><td>{} · {}</td></tr>\
             <tr><td>Last inbound</td><td>{}</td></tr><tr><td>Last send</td><td>{}</td></tr>\
             <tr><td>Last error</td><td>{problem}</td></tr></table>",
            escape_html(&id),
            escape_html(&text("kind")),
            verdict(flag("receiving"), "receiving", "not receiving"),
            verdict(flag("sending"), "sending", "not sending"),
            when(inbound),
            when(sent),
        );
    }
    let degraded: Vec<String> = state
        .readiness
        .degraded()
        .iter()
        .map(|d| match &d.provider {
            Some(provider) => format!("{} ({provider})", d.reason),
            None => d.reason.to_owned(),
        })
        .collect();
    if !degraded.is_empty() {
        let _ = write!(page, "<p class=\"bad\">Degraded: {}</p>", escape_html(&degraded.join(", ")));
    }
}

fn write_load(page: &mut String, state: &HttpState) {
    let metrics = &state.metrics;
    let [sent, retried, dead] = metrics.deliveries_last_hour();
    let memory = match (process::resident_bytes(), process::memory_limit_bytes()) {
        (Some(rss), Some(limit)) => format!("{} MiB of {} MiB", rss >> 20, limit >> 20),
        (Some(rss), None) => format!("{} MiB", rss >> 20),
        _ => "unknown".into(),
    };
    let _ = write!(
        page,
        "<h2>Load</h2><table><tr><td>Session streams</td><td>{} open of {} (budget now {}), {} waiting</td></tr>\
         <tr><td>Deliveries, last hour</td><td>{sent} sent · {retried} retried · {} dead</td></tr>\
         <tr><td>Memory</td><td>{memory}</td></tr></table>",
        metrics.get(Stat::SessionStreams),
        state.config.max_session_streams,
        metrics.get(Stat::SessionStreamBudget),
        metrics.get(Stat::SessionStreamsWaiting),
        if dead > 0 { format!("<b class=\"bad\">{dead}</b>") } else { dead.to_string() },
    );
}

fn write_events(page: &mut String, events: &[RecentEvent]) {
    page.push_str("<h2>Recent events</h2>");
    if events.is_empty() {
        page.push_str("<p class=\"muted\">None yet.</p>");
        return;
    }
    page.push_str("<table>");
    for event in events.iter().rev() {
        let class = if event.level == "INFO" { "muted" } else { "bad" };
        let provider = event.provider.as_deref().map(|p| format!("[{}] ", escape_html(p))).unwrap_or_default();
        let _ = write!(
            page,
            "<tr><td>{}</td><td class=\"{class} n\">{}</td><td>{provider}{}</td></tr>",
            when(Some(event.at_ms)),
            event.level.to_ascii_lowercase(),
            escape_html(&event.text)
        );
    }
    page.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(escape_html("<script>alert('x')</script>"), "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;");
        assert_eq!(escape_html("a & \"b\""), "a &amp; &quot;b&quot;");
        assert_eq!(escape_html("plain ✓"), "plain ✓");
    }

    #[test]
    fn the_page_escapes_what_it_shows_and_reads_the_registry() {
        let mut config = crate::config::test_config(&[(
            "OPEN_COWORK_GATEWAY_PROVIDERS",
            r#"[{"id":"fake","kind":"fake","channelBindingId":"f"}]"#,
        )]);
        config.instance_id = "<img src=x onerror=alert(1)>".into();
        let state = HttpState::for_tests(config, None);
        let page = render(&state);
        assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(page.contains("<h3>fake <small>fake</small></h3>"), "{page}");
        assert!(page.contains("http-equiv=\"refresh\""));
        assert!(!page.contains("<script") && !page.contains("src=\"http"), "no script, no external asset");
        let factory = crate::providers::ProviderFactory::default();
        state.registry.start_all(&|p| factory.build(p), &state.ingress, &state.shutdown);
        let registration = &state.registry.registrations()[0];
        registration.health_reporter().set_receiving(Some("conflict: another <b>poller</b>".into()));
        let page = render(&state);
        assert!(page.contains("<p class=\"bad\">Degraded: polling_conflict (fake)</p>"), "{page}");
        assert!(!page.contains("<b>"), "{page}");
        state.registry.stop_all();
    }
}
