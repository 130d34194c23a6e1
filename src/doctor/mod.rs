//! `open-cowork-gateway doctor`: checks an install end to end before the first message, one line
//! per check with ✓ or ✗ and, on ✗, what to do. Local checks (`local.rs`: state directory, port),
//! Cloud (`cloud.rs`: reachable, TLS, token, each binding granted, clock skew), then each enabled
//! channel through its provider's own check (`ProviderFactory::doctor`), so this module never
//! names a channel kind. Nothing is sent to a chat, no secret is printed, and every group of
//! checks is bounded by `CHECK_TIMEOUT`.

mod cloud;
mod local;

use std::future::Future;
use std::io::Write;
use std::time::Duration;

pub use crate::channel::DoctorCheck;
use crate::config::Config;
use crate::providers::ProviderFactory;

/// The longest one group of checks (Cloud, one channel) may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(15);

/// How a check prints: `✓ name: detail` or `✗ name: detail`.
pub fn line(check: &DoctorCheck) -> String {
    format!("{} {}: {}", if check.ok { "✓" } else { "✗" }, check.name, check.detail)
}

/// Runs every check, printing each line as it completes; `true` when all passed. The factory
/// gets the HTTPS client the channels' checks use (and, in tests, a scripted resolver).
pub async fn run(config: &Config, factory: &mut ProviderFactory, out: &mut dyn Write) -> bool {
    let mut all_passed = true;
    let mut report = |checks: Vec<DoctorCheck>| {
        for check in checks {
            all_passed &= check.ok;
            let _ = writeln!(out, "{}", line(&check));
        }
        let _ = out.flush();
    };
    let providers: Vec<&str> = config.enabled_providers().map(|p| p.id.as_str()).collect();
    report(vec![DoctorCheck::pass("configuration", format!("valid, providers [{}]", providers.join(", ")))]);
    report(vec![local::state_dir(config), local::port(config)]);
    let http = match crate::net::https::build_client(config.cloud.ca_file.as_deref()) {
        Ok(http) => http,
        Err(error) => {
            report(vec![DoctorCheck::fail(
                "TLS setup",
                format!("{error}: fix or remove OPEN_COWORK_GATEWAY_CA_FILE."),
            )]);
            return false;
        }
    };
    report(bounded("Cloud", cloud::check(config, &http)).await);
    factory.context.http = Some(http);
    for provider in config.enabled_providers() {
        report(bounded(&provider.id, factory.doctor(provider)).await);
    }
    all_passed
}

/// `checks`, or one ✗ line when they do not finish within [`CHECK_TIMEOUT`].
async fn bounded(name: &str, checks: impl Future<Output = Vec<DoctorCheck>>) -> Vec<DoctorCheck> {
    tokio::time::timeout(CHECK_TIMEOUT, checks).await.unwrap_or_else(|_| {
        let detail = format!("no answer within {} s: check the network path to it.", CHECK_TIMEOUT.as_secs());
        vec![DoctorCheck::fail(name, detail)]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_that_never_answers_fails_after_the_timeout() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let checks = runtime.block_on(bounded("Cloud", std::future::pending()));
        assert_eq!(checks.len(), 1);
        assert!(!checks[0].ok);
        assert_eq!(line(&checks[0]), "✗ Cloud: no answer within 15 s: check the network path to it.");
    }
}
