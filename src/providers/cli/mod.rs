//! The CLI provider: lines on stdin in, JSON lines on stdout out. The
//! `demo` command uses its text output mode, which prints replies for a person instead.

pub mod kind;

use std::cell::RefCell;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde_json::{json, Map, Value};
use smol_str::SmolStr;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncBufReadExt, AsyncRead, Interest, ReadBuf};
use tokio::task::JoinHandle;

use crate::channel::*;

/// How outbound messages are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CliOutputMode {
    /// One JSON object per line (the upstream protocol).
    Json,
    /// Plain text for a person at a terminal.
    Text,
}

/// The CLI channel: writes to its output and, when it reads stdin, runs a reader task that
/// pushes each line into the inbound queue in order.
pub struct CliProvider {
    output: Rc<CliOutput>,
    capabilities: Capabilities,
    sent: std::cell::Cell<u64>,
    /// `Some` when this channel reads stdin: set once the input has ended.
    input_ended: Option<Rc<std::cell::Cell<bool>>>,
    reader: RefCell<Option<JoinHandle<()>>>,
}

/// Where the CLI writes; shared with the reader task, which reports bad input lines there.
struct CliOutput {
    id: SmolStr,
    mode: CliOutputMode,
    out: RefCell<Box<dyn Write>>,
}

impl CliProvider {
    /// `input_ended`: read stdin, and set the flag when it ends; `None`: write only.
    pub fn new(
        id: SmolStr,
        mode: CliOutputMode,
        out: Box<dyn Write>,
        input_ended: Option<Rc<std::cell::Cell<bool>>>,
    ) -> Self {
        Self {
            output: Rc::new(CliOutput { id, mode, out: RefCell::new(out) }),
            capabilities: Capabilities {
                message_editing: false,
                inline_buttons: false,
                file_downloads: false,
                max_text_length: 12_000,
                max_buttons_per_message: 0,
                max_button_rows: 0,
                max_button_token_bytes: 0,
                max_file_bytes: 10 * 1024 * 1024,
            },
            sent: std::cell::Cell::new(0),
            input_ended,
            reader: RefCell::new(None),
        }
    }
}

#[async_trait(?Send)]
impl Channel for CliProvider {
    fn id(&self) -> &str {
        &self.output.id
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn start(&self, context: ChannelContext) {
        if let Some(ended) = self.input_ended.clone() {
            let output = Rc::clone(&self.output);
            let reader = async move {
                read_input(output, open_stdin(), context).await;
                ended.set(true);
            };
            *self.reader.borrow_mut() = Some(tokio::task::spawn_local(reader));
        }
    }

    fn stop(&self) {
        if let Some(reader) = self.reader.borrow_mut().take() {
            reader.abort();
        }
    }

    async fn send_text(
        &self,
        target: &ChannelTarget,
        text: &str,
        options: &SendOptions,
    ) -> Result<SentMessage, SendError> {
        let allowed = target.provider_kind == "cli" || target.provider == "cli" || target.provider.starts_with("cli-");
        if !allowed {
            return Err(SendError::permanent(format!(
                "CLI provider cannot deliver target for provider {}.",
                target.provider
            )));
        }
        if target.chat_id.trim().is_empty() {
            return Err(SendError::permanent("CLI target.chatId is required."));
        }
        self.sent.set(self.sent.get() + 1);
        let message_id = format!("cli-{}", self.sent.get());
        let output = &self.output;
        match output.mode {
            CliOutputMode::Text => output.write_line(text)?,
            CliOutputMode::Json => {
                let mut line = output.envelope("text");
                line.insert("target".into(), json!(target));
                line.insert("messageId".into(), Value::from(message_id.clone()));
                if let Some(id) = options.delivery_id.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
                    line.insert("providerDeliveryId".into(), Value::from(id));
                }
                line.insert("sentAt".into(), Value::from(crate::time::iso_now()));
                line.insert("text".into(), Value::from(text));
                output.write_line(&Value::Object(line).to_string())?;
            }
        }
        Ok(SentMessage {
            chat_id: target.chat_id.clone(),
            message_id,
            provider_delivery_id: options.delivery_id.clone(),
        })
    }

    async fn answer_interaction(&self, interaction_id: &str, text: &str) -> Result<(), SendError> {
        let output = &self.output;
        match output.mode {
            CliOutputMode::Text => output.write_line(&format!("({text})")),
            CliOutputMode::Json => {
                let mut line = output.envelope("answer_interaction");
                line.insert("interactionId".into(), Value::from(interaction_id));
                line.insert("text".into(), Value::from(text));
                output.write_line(&Value::Object(line).to_string())
            }
        }
    }
}

impl CliOutput {
    fn write_line(&self, line: &str) -> Result<(), SendError> {
        let mut out = self.out.borrow_mut();
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(|e| SendError::transient(format!("CLI output failed: {e}")))
    }

    fn envelope(&self, kind: &str) -> Map<String, Value> {
        let mut line = Map::new();
        line.insert("provider".into(), Value::from(self.id.as_str()));
        line.insert("providerKind".into(), Value::from("cli"));
        line.insert("type".into(), Value::from(kind));
        line
    }

    /// Reports a failed input line, as upstream does, and keeps reading.
    fn report_error(&self, error: &str) {
        let result = match self.mode {
            CliOutputMode::Text => self.write_line(&format!("error: {error}")),
            CliOutputMode::Json => {
                let mut line = self.envelope("error");
                line.insert("error".into(), Value::from(error));
                self.write_line(&Value::Object(line).to_string())
            }
        };
        if let Err(failure) = result {
            tracing::warn!(%failure, "cannot write to the CLI output");
        }
    }
}

/// Longest CLI input line accepted; a longer one is reported and skipped.
const MAX_CLI_LINE: usize = 1024 * 1024;

/// Stdin as the CLI reads it: waited on with the reactor where the kernel allows that, so no
/// `read` is ever in flight while stdin is idle.
type Input = Pin<Box<dyn AsyncRead>>;

/// Stdin through the reactor when epoll accepts it (a terminal, pipe or socket); otherwise (a
/// regular file or /dev/null, which epoll refuses with EPERM) tokio's stdin, whose blocking
/// reads end at once because such a file never waits for input.
fn open_stdin() -> Input {
    match PolledStdin::new() {
        Ok(stdin) => Box::pin(stdin),
        Err(error) => {
            tracing::debug!(%error, "stdin cannot be polled; reading it with blocking reads");
            Box::pin(tokio::io::stdin())
        }
    }
}

/// Stdin read only when it has input. tokio's own stdin runs a blocking `read` on the blocking
/// pool, which at exit the runtime waits for: with stdin idle, the process outlived its drain
/// and the read then took a line meant for the next reader.
///
/// O_NONBLOCK is a flag of the open file, shared with the shell that started us, so it is left
/// alone; instead a zero-timeout `poll` confirms input before each `read`, so the read never
/// blocks. (Only a second process reading the same stdin between the two calls could empty it
/// and make that read wait.)
struct PolledStdin {
    /// A duplicate of fd 0: the reactor registers it and drop closes it, never fd 0 itself.
    fd: AsyncFd<File>,
}

impl PolledStdin {
    // tokio now marks the safe constructor deprecated in favour of an `unsafe` one (tokio#8587),
    // because a safe one cannot stop an inner value from closing or swapping its fd while it is
    // registered; this crate forbids unsafe code. Here the inner value is a `File` that owns its
    // fd, is never handed out mutably and is dropped only after the deregistration, so the
    // contract the `unsafe` constructor asks for holds.
    #[allow(deprecated)]
    fn new() -> std::io::Result<Self> {
        let fd = std::io::stdin().as_fd().try_clone_to_owned()?;
        Ok(Self { fd: AsyncFd::with_interest(File::from(fd), Interest::READABLE)? })
    }
}

impl AsyncRead for PolledStdin {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        loop {
            let mut guard = std::task::ready!(self.fd.poll_read_ready(cx))?;
            if !has_input(guard.get_inner())? {
                // A stale or spurious wakeup: wait for the next edge. The guard clears only the
                // readiness it saw, so input that arrived since is not lost.
                guard.clear_ready();
                continue;
            }
            match guard.get_inner().read(buf.initialize_unfilled()) {
                Ok(read) => {
                    buf.advance(read);
                    return Poll::Ready(Ok(()));
                }
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }
}

/// Whether a `read` of `fd` returns without waiting: input is there, or the end (a hang-up) or
/// an error, which `read` reports.
fn has_input(fd: &File) -> std::io::Result<bool> {
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    loop {
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(ready) => return Ok(ready > 0),
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(errno.into()),
        }
    }
}

/// Reads input lines and runs each through the inbound queue, in order, until the end of the
/// input or the drain. A line's failure is reported on the output, as upstream does.
async fn read_input(output: Rc<CliOutput>, input: Input, mut context: ChannelContext) {
    let mut input = tokio::io::BufReader::new(input);
    loop {
        let line = tokio::select! {
            // The drain first: once it began, stdin is not read again, even when input waits.
            biased;
            _ = context.drain.started() => return,
            line = read_line_bounded(&mut input, MAX_CLI_LINE) => line,
        };
        let line = match line {
            Ok(Some(InputLine::Text(line))) => line,
            Ok(Some(InputLine::TooLong)) => {
                output.report_error(&format!("CLI input line is longer than {MAX_CLI_LINE} bytes and was skipped."));
                continue;
            }
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, "reading the CLI input failed");
                return;
            }
        };
        match parse_line(&output.id, &line, crate::time::now_ms()) {
            None => {}
            Some(Err(error)) => output.report_error(&error),
            Some(Ok(message)) => {
                if let Err(error) = context.ingress.submit_and_wait(&output.id, message).await {
                    output.report_error(&error.to_string());
                }
            }
        }
    }
}

/// One line of CLI input.
#[derive(Debug, PartialEq, Eq)]
enum InputLine {
    Text(String),
    /// Longer than the bound; its bytes were discarded.
    TooLong,
}

/// Reads one line of at most `max` bytes; `Ok(None)` at end of input.
async fn read_line_bounded<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> std::io::Result<Option<InputLine>> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let buffer = reader.fill_buf().await?;
        let at_end = buffer.is_empty();
        let (taken, ended) = match buffer.iter().position(|b| *b == b'\n') {
            Some(end) => (end + 1, true),
            None => (buffer.len(), at_end),
        };
        if line.len() + taken <= max {
            line.extend_from_slice(&buffer[..taken]);
        } else {
            too_long = true;
        }
        reader.consume(taken);
        if ended {
            if at_end && line.is_empty() && !too_long {
                return Ok(None);
            }
            return Ok(Some(if too_long {
                InputLine::TooLong
            } else {
                InputLine::Text(String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_owned())
            }));
        }
    }
}

/// Parses one stdin line into a message; `None` for a blank line.
fn parse_line(provider_id: &str, line: &str, now_ms: u64) -> Option<Result<InboundMessage, String>> {
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    let payload: Value = if line.starts_with('{') {
        match serde_json::from_str(line) {
            Ok(value) => value,
            Err(error) => return Some(Err(format!("CLI input is not valid JSON: {error}"))),
        }
    } else {
        json!({"text": line})
    };
    Some(message_from_payload(provider_id, payload, now_ms))
}

fn message_from_payload(provider_id: &str, payload: Value, now_ms: u64) -> Result<InboundMessage, String> {
    let text_field = |key: &str| {
        payload.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
    };
    let id = text_field("id").unwrap_or_else(crate::util::ids::random_id);
    let text = text_field("text").unwrap_or_default();
    let raw_text = text_field("rawText").unwrap_or_else(|| text.clone());
    let mut words = text.strip_prefix('/').map(|rest| rest.split_whitespace()).into_iter().flatten();
    let command = words.next().filter(|verb| {
        let bytes = verb.as_bytes();
        !bytes.is_empty()
            && bytes[0].is_ascii_alphabetic()
            && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
    });
    let interaction = match payload.get("interaction") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => None,
        Some(value) => {
            let id = value.get("id").and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
            let token = value.get("token").and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
            let (Some(id), Some(token)) = (id, token) else {
                return Err("CLI interaction requires id and token.".into());
            };
            Some(InteractionRef {
                id: id.into(),
                token: token.into(),
                kind: if value.get("kind").and_then(Value::as_str) == Some("button") { "button" } else { "command" },
            })
        }
    };
    let attachment_count = match payload.get("attachments") {
        Some(Value::Array(items)) => {
            if items.iter().any(|a| a.get("filename").and_then(Value::as_str).is_none_or(|f| f.trim().is_empty())) {
                return Err("CLI attachment.filename is required.".into());
            }
            items.len()
        }
        _ => 0,
    };
    let user = text_field("userId").unwrap_or_else(|| "cli-user".into());
    Ok(InboundMessage {
        provider_event_id: Some(id.clone()),
        provider_message_id: Some(id.clone()),
        id,
        provider: provider_id.into(),
        target: ChannelTarget {
            provider: provider_id.into(),
            provider_kind: "cli".into(),
            chat_id: text_field("chatId").unwrap_or_else(|| "local-cli".into()),
            is_direct: Some(true),
            thread_id: text_field("threadId"),
            user_id: text_field("userId"),
            message_id: None,
        },
        sender: Sender {
            provider_user_id: user,
            username: text_field("username"),
            display_name: text_field("displayName"),
        },
        is_command: command.is_some(),
        command: command.map(str::to_ascii_lowercase),
        text,
        raw_text,
        attachment_count,
        interaction,
        received_at_ms: now_ms,
        raw: payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn input_lines_are_bounded() {
        let mut input = tokio::io::BufReader::with_capacity(4, &b"hello\r\nthis line is too long\nok\nlast"[..]);
        let mut lines = Vec::new();
        while let Some(line) = read_line_bounded(&mut input, 10).await.unwrap() {
            lines.push(line);
        }
        assert_eq!(
            lines,
            [
                InputLine::Text("hello".into()),
                InputLine::TooLong,
                InputLine::Text("ok".into()),
                InputLine::Text("last".into())
            ]
        );
    }

    #[test]
    fn lines_map_as_upstream() {
        let hello = parse_line("cli", "hello", 1).unwrap().unwrap();
        assert_eq!(
            (hello.text.as_str(), hello.target.chat_id.as_str(), hello.sender.provider_user_id.as_str()),
            ("hello", "local-cli", "cli-user")
        );
        let approve = parse_line("cli", r#"{"id":"msg-1","chatId":"terminal-1","userId":"operator","text":"/approve token-1","interaction":{"id":"interaction-1","token":"token-1"}}"#, 1)
            .unwrap()
            .unwrap();
        assert_eq!(
            (approve.command.as_deref(), approve.interaction.as_ref().unwrap().kind),
            (Some("approve"), "command")
        );
        assert_eq!(approve.provider_event_id(), "msg-1");
        assert!(parse_line("cli", "   ", 1).is_none());
        assert!(parse_line("cli", "{oops", 1).unwrap().is_err());
        assert_eq!(
            parse_line("cli", r#"{"interaction":{"id":"x"}}"#, 1).unwrap().unwrap_err(),
            "CLI interaction requires id and token."
        );
    }

    #[tokio::test]
    async fn json_output_lines() {
        #[derive(Clone, Default)]
        struct Shared(std::rc::Rc<RefCell<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.borrow_mut().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Shared::default();
        let cli = CliProvider::new("cli".into(), CliOutputMode::Json, Box::new(buffer.clone()), None);
        let target = ChannelTarget {
            provider: "cli".into(),
            provider_kind: "cli".into(),
            chat_id: "local-cli".into(),
            ..ChannelTarget::default()
        };
        cli.send_text(&target, "hi", &SendOptions { delivery_id: Some("d1".into()) }).await.unwrap();
        let line: Value = serde_json::from_slice(buffer.0.borrow().split(|b| *b == b'\n').next().unwrap()).unwrap();
        assert_eq!(
            (line["type"].as_str(), line["text"].as_str(), line["providerDeliveryId"].as_str()),
            (Some("text"), Some("hi"), Some("d1"))
        );
        let other = ChannelTarget {
            provider: "telegram".into(),
            provider_kind: "telegram".into(),
            chat_id: "c".into(),
            ..ChannelTarget::default()
        };
        assert!(cli.send_text(&other, "x", &SendOptions::default()).await.is_err());
    }
}
