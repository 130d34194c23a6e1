//! Logging: tracing to journald (when `JOURNAL_STREAM` says stderr is the journal, or when asked)
//! or compact lines on stderr; the level comes from `--log-level`, else `RUST_LOG`, else
//! `OPEN_COWORK_GATEWAY_LOG_LEVEL` / `logging.level` (upstream accepted it and logged nothing).
//! Repeated warnings are rate-limited
//! with [`WarnLimiter`]. The gateway's own info, warning and error lines are also kept in a small
//! ring ([`recent`]) for the status page, whatever the output level.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::config::LogLevel;

mod recent;
pub use recent::{last_problem, recent, RecentEvent};

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// journald when `JOURNAL_STREAM` is set, else stderr.
    Auto,
    Journald,
    Stderr,
}

impl LogFormat {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "auto" => Some(Self::Auto),
            "journald" => Some(Self::Journald),
            "stderr" => Some(Self::Stderr),
            _ => None,
        }
    }
}

fn level_filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Silent => LevelFilter::OFF,
    }
}

/// The filter: an explicit `--log-level` wins, then a parseable `RUST_LOG` (`info`,
/// `open_cowork_gateway=debug,hyper=warn`, …), then the configured level.
pub fn filter(cli_level: Option<LogLevel>, rust_log: Option<&str>, configured: LogLevel) -> Targets {
    if let Some(level) = cli_level {
        return Targets::new().with_default(level_filter(level));
    }
    if let Some(targets) = rust_log.map(str::trim).filter(|s| !s.is_empty()).and_then(|s| s.parse::<Targets>().ok()) {
        return targets;
    }
    Targets::new().with_default(level_filter(configured))
}

/// Installs the global subscriber. Returns a note when journald was wanted but unavailable.
pub fn init(format: LogFormat, filter: Targets) -> Option<String> {
    let wants_journald = match format {
        LogFormat::Journald => true,
        LogFormat::Auto => std::env::var_os("JOURNAL_STREAM").is_some(),
        LogFormat::Stderr => false,
    };
    if wants_journald {
        match tracing_journald::layer() {
            Ok(layer) => {
                let _ = tracing_subscriber::registry()
                    .with(layer.with_syslog_identifier("open-cowork-gateway".into()).with_filter(filter))
                    .with(recent::layer())
                    .try_init();
                return None;
            }
            Err(error) => {
                init_stderr(filter);
                return Some(format!("journald is not reachable ({error}); logging to stderr"));
            }
        }
    }
    init_stderr(filter);
    None
}

fn init_stderr(filter: Targets) {
    let layer =
        tracing_subscriber::fmt::layer().compact().with_writer(std::io::stderr).with_target(false).with_filter(filter);
    let _ = tracing_subscriber::registry().with(layer).with(recent::layer()).try_init();
}

/// Lets a repeated warning through at most once per interval per key, and says how many were
/// held back since the last one. Keys are static strings, so the map stays small.
pub struct WarnLimiter {
    interval: Duration,
    last: RefCell<HashMap<&'static str, (Instant, u64)>>,
}

impl WarnLimiter {
    pub fn new(interval: Duration) -> Self {
        Self { interval, last: RefCell::new(HashMap::new()) }
    }

    /// `Some(suppressed)` when this occurrence should be logged.
    pub fn allow(&self, key: &'static str, now: Instant) -> Option<u64> {
        let mut last = self.last.borrow_mut();
        match last.get_mut(key) {
            Some((at, suppressed)) if now.duration_since(*at) < self.interval => {
                *suppressed += 1;
                None
            }
            Some((at, suppressed)) => {
                let held_back = *suppressed;
                *at = now;
                *suppressed = 0;
                Some(held_back)
            }
            None => {
                last.insert(key, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_precedence() {
        let show = |t: Targets| format!("{t:?}");
        assert_eq!(
            show(filter(Some(LogLevel::Debug), Some("error"), LogLevel::Warn)),
            show(Targets::new().with_default(LevelFilter::DEBUG))
        );
        assert_eq!(
            show(filter(None, Some("error"), LogLevel::Warn)),
            show(Targets::new().with_default(LevelFilter::ERROR))
        );
        assert_eq!(show(filter(None, Some(""), LogLevel::Warn)), show(Targets::new().with_default(LevelFilter::WARN)));
        assert_eq!(show(filter(None, None, LogLevel::Silent)), show(Targets::new().with_default(LevelFilter::OFF)));
        let targets = filter(None, Some("open_cowork_gateway=debug,hyper=warn"), LogLevel::Info);
        assert!(targets.would_enable("open_cowork_gateway::http", &tracing::Level::DEBUG));
        assert!(!targets.would_enable("hyper::proto", &tracing::Level::INFO));
    }

    #[test]
    fn warn_limiter_counts_what_it_holds_back() {
        let limiter = WarnLimiter::new(Duration::from_secs(60));
        let start = Instant::now();
        assert_eq!(limiter.allow("accept", start), Some(0));
        assert_eq!(limiter.allow("accept", start + Duration::from_secs(1)), None);
        assert_eq!(limiter.allow("accept", start + Duration::from_secs(2)), None);
        assert_eq!(limiter.allow("other", start + Duration::from_secs(2)), Some(0));
        assert_eq!(limiter.allow("accept", start + Duration::from_secs(61)), Some(2));
    }
}
