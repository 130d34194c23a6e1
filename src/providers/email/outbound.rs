//! Replies over SMTP with lettre: never a hand-rolled dialogue. lettre writes
//! `EHLO`, STARTTLS, AUTH PLAIN, the envelope and the dot-stuffed data; this module decides the
//! TLS policy, builds the mail with typed headers (a CR or LF in a subject, an address or a
//! thread id cannot start a header of its own), and turns lettre's errors into the delivery
//! classes: a 4xx reply, a timeout or a lost connection is transient, a 5xx reply permanent.

use std::time::Duration;

use lettre::message::header::{self, ContentType};
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::channel::SendError;
use crate::config::providers::email::EmailSettings;

use super::threading::ReplyHeaders;

/// The name in `EHLO` (fixed upstream).
const CLIENT_NAME: &str = "open-cowork-gateway";

/// A configured SMTP relay and the sender it writes as.
pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    timeout: Duration,
}

/// A built reply: the mail and the `Message-ID` it carries.
pub struct Reply {
    pub message: Message,
    pub message_id: String,
}

impl Smtp {
    /// The transport for `settings`. TLS: implicit when `smtpSecure`; otherwise STARTTLS, required
    /// unless plain text is allowed (loopback or `smtpAllowPlaintext`) — and always required
    /// when there are credentials, so AUTH never crosses a plain-text connection.
    pub fn new(settings: &EmailSettings) -> Result<Self, String> {
        let mut tls = TlsParameters::builder(settings.smtp_host.clone());
        if let Some(path) = &settings.ca_file {
            let certificates = crate::net::https::load_ca_certificates(path).map_err(|e| e.to_string())?;
            for certificate in certificates {
                let certificate = Certificate::from_der(certificate.to_vec())
                    .map_err(|e| format!("SMTP CA certificate {} is unusable: {e}", path.display()))?;
                tls = tls.add_root_certificate(certificate);
            }
        }
        let tls = tls.build_rustls().map_err(|e| format!("SMTP TLS setup failed: {e}"))?;
        let tls = if settings.smtp_secure {
            Tls::Wrapper(tls)
        } else if settings.allow_plaintext && settings.smtp_username.is_none() {
            Tls::Opportunistic(tls)
        } else {
            Tls::Required(tls)
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(settings.smtp_host.as_str())
            .port(settings.smtp_port)
            .tls(tls)
            .timeout(Some(settings.smtp_timeout))
            .hello_name(ClientId::Domain(CLIENT_NAME.into()));
        if let Some(username) = &settings.smtp_username {
            let password = settings.smtp_password.as_ref().map(|p| p.expose().to_owned()).unwrap_or_default();
            builder = builder
                .credentials(Credentials::new(username.clone(), password))
                .authentication(vec![Mechanism::Plain]);
        }
        Ok(Self { transport: builder.build(), from: from_mailbox(settings)?, timeout: settings.smtp_timeout })
    }

    /// Sends one mail; done once the server accepted the data (lettre then ends the session and
    /// ignores a failed `QUIT`: the mail was accepted; upstream failed the send).
    pub async fn send(&self, reply: &Reply) -> Result<(), SendError> {
        match tokio::time::timeout(self.timeout, self.transport.send(reply.message.clone())).await {
            Err(_) => Err(SendError::transient("SMTP response timed out.")),
            Ok(Err(error)) => Err(classify(&error)),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// One session up to AUTH (as [`Smtp::new`] set it up), then QUIT: nothing is sent
    /// (`doctor`). The error says what to fix, redacted.
    pub async fn check(&self) -> Result<(), String> {
        let problem = |error: &lettre::transport::smtp::Error| {
            let hint = if error.is_tls() || error.to_string().to_ascii_lowercase().contains("starttls") {
                "the server must offer STARTTLS (or use smtpSecure on port 465) with a certificate this gateway trusts"
            } else if error.is_permanent() {
                "check smtpUsername and the SMTP password"
            } else {
                "check smtpHost, smtpPort and the firewall"
            };
            crate::config::redact::redact_text(&format!("{error}: {hint}."))
        };
        match tokio::time::timeout(self.timeout, self.transport.test_connection()).await {
            Err(_) => Err("the server did not answer in time: check smtpHost, smtpPort and the firewall.".into()),
            Ok(Err(error)) => Err(problem(&error)),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// The reply mail to `to` with its threading `headers`. A MIME 1.0 mail: UTF-8 plain text in
    /// the transfer encoding lettre finds valid for the body (7bit, quoted-printable or base64).
    pub fn reply(&self, to: &str, headers: &ReplyHeaders, text: &str) -> Result<Reply, SendError> {
        if to.contains(['\r', '\n']) {
            return Err(SendError::permanent("SMTP command line must not contain CR or LF."));
        }
        let to: Address = to
            .trim()
            .parse()
            .map_err(|_| SendError::permanent("Email target chatId is not a valid address (invalid recipient)."))?;
        let message_id = format!("<{}@open-cowork.local>", crate::util::ids::random_id());
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to))
            .subject(one_line(&headers.subject))
            .message_id(Some(message_id.clone()))
            .header(header::MIME_VERSION_1_0)
            .header(ContentType::TEXT_PLAIN);
        // Ids come checked (no control characters or spaces); one_line is a second guard.
        if let Some(parent) = headers.in_reply_to.as_deref().map(one_line).filter(|t| !t.is_empty()) {
            builder = builder.in_reply_to(parent);
        }
        if let Some(chain) = headers.references.as_deref().map(one_line).filter(|t| !t.is_empty()) {
            builder = builder.references(chain);
        }
        let message = builder
            .body(text.to_owned())
            .map_err(|e| SendError::permanent(format!("Email message is invalid: {e}")))?;
        Ok(Reply { message, message_id })
    }
}

/// `From:` as configured when it parses as a mailbox (`Agent <agent@example.com>`), else the
/// bare address found in it; the envelope sender is that address either way.
fn from_mailbox(settings: &EmailSettings) -> Result<Mailbox, String> {
    if let Ok(mailbox) = settings.from.parse::<Mailbox>() {
        if mailbox.email.to_string().eq_ignore_ascii_case(&settings.from_address) {
            return Ok(mailbox);
        }
    }
    let address: Address =
        settings.from_address.parse().map_err(|_| "Email provider requires a valid from address.".to_owned())?;
    Ok(Mailbox::new(None, address))
}

/// Header sanitising: every run of CR/LF becomes one space, then trimmed.
fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_break = false;
    for c in text.chars() {
        if c == '\r' || c == '\n' {
            if !in_break {
                out.push(' ');
            }
            in_break = true;
        } else {
            out.push(c);
            in_break = false;
        }
    }
    out.trim().to_owned()
}

/// Typed classification (upstream matched message text, and inverted the classes). A 4xx reply
/// is temporary by definition (421 "try later", 450
/// mailbox busy), a 5xx reply final (550 no such user); timeouts and lost connections are worth
/// another attempt; a certificate or STARTTLS refusal needs the operator, not a retry.
fn classify(error: &lettre::transport::smtp::Error) -> SendError {
    let text = crate::config::redact::redact_text(&format!("SMTP send failed: {error}"));
    if error.is_permanent() {
        SendError::permanent(text)
    } else if error.is_transient() || error.is_timeout() {
        SendError::transient(text)
    } else if error.is_tls() || error.is_client() {
        SendError::permanent(text)
    } else {
        SendError::transient(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn smtp() -> Smtp {
        let settings = EmailSettings {
            inbound_secret: Secret::new("s"),
            smtp_password: None,
            from: "Agent <agent@example.com>".into(),
            from_address: "agent@example.com".into(),
            smtp_host: "127.0.0.1".into(),
            smtp_port: 25,
            smtp_secure: false,
            smtp_username: None,
            allow_plaintext: true,
            subject: "S".into(),
            max_file_bytes: 1024,
            smtp_timeout: Duration::from_secs(5),
            ca_file: None,
        };
        Smtp::new(&settings).unwrap()
    }

    #[test]
    fn reply_headers_thread_and_never_inject() {
        let headers = ReplyHeaders {
            subject: "Status\r\nBcc: eve@example.com".into(),
            in_reply_to: Some("<t@x.test>\r\nX-Evil: 1".into()),
            references: Some("<t@x.test>".into()),
        };
        let reply = smtp().reply("bob@example.com", &headers, "hi\n.\nthere").unwrap();
        let raw = String::from_utf8(reply.message.formatted()).unwrap();
        let headers = raw.split("\r\n\r\n").next().unwrap();
        assert!(headers.contains("From: Agent <agent@example.com>"), "{headers}");
        assert!(headers.contains("To: bob@example.com"), "{headers}");
        assert!(headers.contains(&format!("Message-ID: {}", reply.message_id)), "{headers}");
        assert!(reply.message_id.ends_with("@open-cowork.local>"));
        assert!(!headers.lines().any(|l| l.starts_with("Bcc:") || l.starts_with("X-Evil:")), "{headers}");
        assert_eq!(reply.message.envelope().from().map(ToString::to_string).as_deref(), Some("agent@example.com"));
        assert!(headers.contains("MIME-Version: 1.0"), "{headers}");
        let plain = ReplyHeaders { subject: "s".into(), in_reply_to: None, references: None };
        assert!(smtp().reply("bob@example.com\r\nRCPT TO:<eve@example.com>", &plain, "x").is_err());
        assert!(smtp().reply("not an address", &plain, "x").is_err());
        assert_eq!(one_line(" a\r\n\r\nb \n"), "a b");
    }
}
