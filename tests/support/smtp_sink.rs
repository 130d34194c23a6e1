//! An SMTP server's receiving end on loopback, written for the tests with tokio (and tokio-rustls
//! for STARTTLS with the test certificate of `tests/fixtures/email/`). It records every
//! transaction's envelope, the raw message as the client sent it (dot-stuffing undone), whether
//! it ran over TLS and what AUTH it saw, and answers `MAIL`, `RCPT` and the end of `DATA` from a
//! script (e.g. a `421` or a `550`) or with success.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::rustls;

/// Where in the transaction a scripted reply replaces the success answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Mail,
    Rcpt,
    DataEnd,
}

/// One transaction (`MAIL` … end of `DATA`), whatever its outcome.
#[derive(Debug, Default, Clone)]
pub struct Transaction {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The message as sent (CRLF line ends, dot-stuffing undone); empty when `DATA` never ran.
    pub data: String,
    pub tls: bool,
    /// The decoded `AUTH PLAIN` response (`\0user\0password`), if any.
    pub auth: Option<String>,
    /// The reply the end of `DATA` got (`250 …` when accepted).
    pub outcome: String,
}

impl Transaction {
    /// The value of header `name` in the raw message (first occurrence, unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or("");
        let mut found: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(value) = found.as_mut() {
                if line.starts_with([' ', '\t']) {
                    value.push_str(line);
                    continue;
                }
                break;
            }
            if let Some((key, value)) = line.split_once(':') {
                if key.eq_ignore_ascii_case(name) {
                    found = Some(value.trim().to_owned());
                }
            }
        }
        found
    }

    /// Every header name of the message, in order.
    pub fn header_names(&self) -> Vec<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or("");
        head.split("\r\n")
            .filter(|l| !l.starts_with([' ', '\t']))
            .filter_map(|l| l.split_once(':').map(|(k, _)| k.to_owned()))
            .collect()
    }

    pub fn accepted(&self) -> bool {
        self.outcome.starts_with("250")
    }
}

#[derive(Default)]
pub struct Sink {
    pub transactions: Vec<Transaction>,
    /// Replies used instead of success, front first, each at its stage.
    pub script: VecDeque<(Stage, &'static str)>,
    pub connections: usize,
    /// Offer STARTTLS with this server configuration.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Sink {
    pub fn accepted(&self) -> Vec<&Transaction> {
        self.transactions.iter().filter(|t| t.accepted()).collect()
    }
}

pub type SharedSink = Rc<RefCell<Sink>>;

/// The server configuration of the test certificate (`tests/fixtures/email/server.{pem,key}`).
pub fn test_tls_config() -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/email");
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.join("server.pem")).unwrap().collect::<Result<_, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    Arc::new(config)
}

/// Starts the sink on an ephemeral loopback port (inside a `LocalSet`).
pub async fn start(sink: SharedSink) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::task::spawn_local(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            sink.borrow_mut().connections += 1;
            let sink = Rc::clone(&sink);
            tokio::task::spawn_local(async move {
                let tls = sink.borrow().tls.clone();
                let mut reader = BufReader::new(stream);
                if reply(&mut reader, "220 sink.test ESMTP").await.is_err() {
                    return;
                }
                let Some(upgrade) = dialogue(reader, &sink, tls.is_some(), false).await else { return };
                let Some(config) = tls else { return };
                let Ok(stream) = tokio_rustls::TlsAcceptor::from(config).accept(upgrade).await else { return };
                dialogue(BufReader::new(stream), &sink, false, true).await;
            });
        }
    });
    address
}

async fn reply<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut BufReader<S>, line: &str) -> std::io::Result<()> {
    stream.get_mut().write_all(format!("{line}\r\n").as_bytes()).await?;
    stream.get_mut().flush().await
}

fn scripted(sink: &SharedSink, stage: Stage, success: &'static str) -> &'static str {
    let mut sink = sink.borrow_mut();
    if sink.script.front().is_some_and(|(s, _)| *s == stage) {
        return sink.script.pop_front().map_or(success, |(_, line)| line);
    }
    success
}

fn path_of(argument: &str) -> String {
    let start = argument.find('<').map_or(0, |i| i + 1);
    let end = argument[start..].find('>').map_or(argument.len(), |i| start + i);
    argument[start..end].to_owned()
}

/// Runs commands until `QUIT` or EOF; returns the stream when the client asked for STARTTLS.
async fn dialogue<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: BufReader<S>,
    sink: &SharedSink,
    offer_tls: bool,
    tls: bool,
) -> Option<S> {
    let mut current: Option<Transaction> = None;
    let mut auth: Option<String> = None;
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']);
        let (verb, argument) = line.split_once(' ').unwrap_or((line, ""));
        let answer: String = match verb.to_ascii_uppercase().as_str() {
            "EHLO" | "HELO" => {
                let mut lines = vec!["250-sink.test".to_owned()];
                if offer_tls {
                    lines.push("250-STARTTLS".into());
                }
                lines.push("250-AUTH PLAIN".into());
                lines.push("250 8BITMIME".into());
                lines.join("\r\n")
            }
            "STARTTLS" if offer_tls => {
                reply(&mut stream, "220 2.0.0 ready to start TLS").await.ok()?;
                return Some(stream.into_inner());
            }
            "AUTH" => {
                let encoded = argument.split_whitespace().nth(1).unwrap_or("");
                auth = base64_decode(encoded);
                "235 2.7.0 accepted".into()
            }
            "MAIL" => {
                current = Some(Transaction {
                    mail_from: path_of(argument),
                    tls,
                    auth: auth.clone(),
                    ..Transaction::default()
                });
                scripted(sink, Stage::Mail, "250 2.1.0 ok").into()
            }
            "RCPT" => {
                let answer = scripted(sink, Stage::Rcpt, "250 2.1.5 ok");
                if let Some(t) = current.as_mut() {
                    t.rcpt_to.push(path_of(argument));
                }
                if !answer.starts_with('2') {
                    if let Some(mut t) = current.take() {
                        t.outcome = answer.into();
                        sink.borrow_mut().transactions.push(t);
                    }
                }
                answer.into()
            }
            "DATA" => {
                reply(&mut stream, "354 end with <CRLF>.<CRLF>").await.ok()?;
                let mut data = String::new();
                loop {
                    let mut body_line = String::new();
                    if stream.read_line(&mut body_line).await.ok()? == 0 {
                        return None;
                    }
                    if body_line == ".\r\n" {
                        break;
                    }
                    data.push_str(body_line.strip_prefix('.').unwrap_or(&body_line));
                }
                let answer = scripted(sink, Stage::DataEnd, "250 2.0.0 queued");
                let mut t = current.take().unwrap_or_default();
                t.data = data;
                t.outcome = answer.into();
                sink.borrow_mut().transactions.push(t);
                answer.into()
            }
            "RSET" => {
                current = None;
                "250 2.0.0 ok".into()
            }
            "NOOP" => "250 2.0.0 ok".into(),
            "QUIT" => {
                let _ = reply(&mut stream, "221 2.0.0 bye").await;
                return None;
            }
            _ => "502 5.5.2 unknown command".into(),
        };
        reply(&mut stream, &answer).await.ok()?;
    }
}

fn base64_decode(text: &str) -> Option<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for byte in text.bytes().take_while(|b| *b != b'=') {
        let value = ALPHABET.iter().position(|a| *a == byte)? as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    String::from_utf8(out).ok()
}
