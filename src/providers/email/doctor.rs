//! `doctor` for the email channel: one SMTP session to the relay (connect, EHLO, STARTTLS or
//! implicit TLS, AUTH as configured), ended with QUIT before any mail is given.

use crate::channel::DoctorCheck;
use crate::config::providers::email::EmailSettings;

/// The check of one email entry.
pub async fn check(id: &str, settings: &EmailSettings) -> Vec<DoctorCheck> {
    let name = format!("{id}: SMTP {}:{}", settings.smtp_host, settings.smtp_port);
    let smtp = match super::outbound::Smtp::new(settings) {
        Ok(smtp) => smtp,
        Err(error) => return vec![DoctorCheck::fail(name, error)],
    };
    let tls = if settings.smtp_secure { "TLS" } else { "STARTTLS" };
    let steps = match (settings.smtp_username.is_some(), settings.allow_plaintext && !settings.smtp_secure) {
        (true, _) => format!("connected, EHLO, {tls}, AUTH accepted"),
        (false, true) => "connected, EHLO (STARTTLS when offered; plain text is allowed here)".to_owned(),
        (false, false) => format!("connected, EHLO, {tls}"),
    };
    vec![match smtp.check().await {
        Ok(()) => DoctorCheck::pass(name, steps),
        Err(problem) => DoctorCheck::fail(name, problem),
    }]
}
