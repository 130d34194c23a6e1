//! The last operator-relevant log events, kept in memory for the status page: the gateway's own
//! info, warning and error lines (not the HTTP and TLS libraries' chatter), whatever level the
//! output is set to, so a page opened after the fact still shows what happened. Bounded: the last
//! [`KEEP`] events, and the last warning or error of each provider (at most [`PROVIDERS`]).
//! Log lines are already redacted where they are written; the text is redacted once more here
//! because the page shows it to whoever passes the operator check.

use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{Filtered, Targets};
use tracing_subscriber::layer::{Context, Layer};

use crate::config::redact::redact_text;

/// Events the ring keeps.
const KEEP: usize = 10;
/// Providers whose last problem is kept (the configuration bounds them far below this).
const PROVIDERS: usize = 32;
/// Characters kept of one event's text.
const MAX_TEXT: usize = 300;

/// One log event as the status page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentEvent {
    pub at_ms: u64,
    /// `INFO`, `WARN` or `ERROR`.
    pub level: &'static str,
    /// The `provider` field, when the line names one.
    pub provider: Option<String>,
    /// The message and its other fields (`key=value`), redacted and cut to a bounded length.
    pub text: String,
}

struct Ring {
    events: VecDeque<RecentEvent>,
    problems: Vec<RecentEvent>,
}

static RING: Mutex<Ring> = Mutex::new(Ring { events: VecDeque::new(), problems: Vec::new() });

fn with_ring<T>(f: impl FnOnce(&mut Ring) -> T) -> T {
    // A panic elsewhere while holding the lock leaves a ring that is still well-formed.
    let mut ring = RING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    f(&mut ring)
}

/// The last events, oldest first.
pub fn recent() -> Vec<RecentEvent> {
    with_ring(|ring| ring.events.iter().cloned().collect())
}

/// The last warning or error logged for this provider.
pub fn last_problem(provider: &str) -> Option<RecentEvent> {
    with_ring(|ring| ring.problems.iter().find(|e| e.provider.as_deref() == Some(provider)).cloned())
}

fn remember(event: RecentEvent) {
    with_ring(|ring| {
        if event.level != "INFO" {
            if let Some(provider) = &event.provider {
                ring.problems.retain(|e| e.provider.as_deref() != Some(provider));
                if ring.problems.len() < PROVIDERS {
                    ring.problems.push(event.clone());
                }
            }
        }
        if ring.events.len() == KEEP {
            ring.events.pop_front();
        }
        ring.events.push_back(event);
    });
}

/// The ring as a tracing layer with its own filter: the gateway's targets at info and above.
pub(super) fn layer<S>() -> Filtered<RecentLayer, Targets, S>
where
    S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    RecentLayer.with_filter(Targets::new().with_target(env!("CARGO_CRATE_NAME"), LevelFilter::INFO))
}

/// Feeds [`recent`].
pub struct RecentLayer;

impl<S: Subscriber> Layer<S> for RecentLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let level = match *event.metadata().level() {
            Level::ERROR => "ERROR",
            Level::WARN => "WARN",
            _ => "INFO",
        };
        let mut fields = Fields::default();
        event.record(&mut fields);
        let provider = fields.provider.take();
        remember(RecentEvent { at_ms: crate::time::now_ms(), level, provider, text: fields.finish() });
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
    provider: Option<String>,
}

impl Fields {
    fn finish(self) -> String {
        let mut text = self.message + &self.rest;
        if let Some((cut, _)) = text.char_indices().nth(MAX_TEXT) {
            text.truncate(cut);
            text.push('…');
        }
        text
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = redact_text(value),
            "provider" => self.provider = Some(value.chars().take(64).collect()),
            name if self.rest.len() < MAX_TEXT => {
                let _ = write!(self.rest, " {name}={}", redact_text(value));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn keeps_the_gateways_own_lines_bounded_and_redacted() {
        let subscriber = tracing_subscriber::registry().with(layer());
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(provider = "tg", token = "Bearer abcdefghijklmnopqrstuvwxyz0123", "circuit opened");
            tracing::debug!("too chatty");
            tracing::info!(target: "hyper::proto", "library chatter");
            for n in 2..KEEP {
                tracing::info!(n, "event");
            }
            tracing::info!("one more");
        });
        let events = recent();
        assert_eq!(events.len(), KEEP, "bounded");
        assert!(events[0].text.starts_with("circuit opened"), "only the gateway's info and above: {events:?}");
        assert!(events[1..KEEP - 1].iter().all(|e| e.text.starts_with("event n=")), "{events:?}");
        assert_eq!(events[KEEP - 1].text, "one more");
        let problem = last_problem("tg").expect("the warning is kept per provider");
        assert_eq!(problem.level, "WARN");
        assert!(problem.text.starts_with("circuit opened token="), "{}", problem.text);
        assert!(!problem.text.contains("abcdefghijklmnopqrstuvwxyz0123"), "{}", problem.text);
    }
}
