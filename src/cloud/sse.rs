//! An incremental Server-Sent Events parser: bytes in, events out, no I/O inside.
//!
//! Follows the WHATWG event-stream rules: LF, CRLF and CR line ends (a CR at the end of one chunk
//! and an LF at the start of the next are one line end), `:` comments, `field: value` with one
//! optional space removed, multi-line `data` joined with `\n`, `event`, `id` (ignored when it
//! holds NUL) and `retry` (digits only) kept, dispatch on a blank line, nothing dispatched without
//! data. Lines and events are bounded: exceeding a bound is an error that ends the connection.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field, if any (the default type is "message").
    pub event: Option<String>,
    /// The last `id:` seen on the stream so far.
    pub id: Option<String>,
    pub data: String,
    /// The `retry:` field of this event, in milliseconds.
    pub retry: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("SSE line longer than {0} bytes")]
    LineTooLong(usize),
    #[error("SSE event larger than {0} bytes")]
    EventTooLarge(usize),
}

/// Default bounds: Cloud drops a client that falls 8 MiB behind, so no single event is larger.
const DEFAULT_MAX_LINE: usize = 4 * 1024 * 1024;
const DEFAULT_MAX_EVENT: usize = 8 * 1024 * 1024;

#[derive(Debug)]
pub struct SseParser {
    max_line: usize,
    max_event: usize,
    line: Vec<u8>,
    /// The previous chunk ended with CR: an LF at the start of the next one is part of that end.
    after_cr: bool,
    data: String,
    has_data: bool,
    event: Option<String>,
    last_id: Option<String>,
    retry: Option<u64>,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_LINE, DEFAULT_MAX_EVENT)
    }
}

impl SseParser {
    pub fn new(max_line: usize, max_event: usize) -> Self {
        Self {
            max_line,
            max_event,
            line: Vec::new(),
            after_cr: false,
            data: String::new(),
            has_data: false,
            event: None,
            last_id: None,
            retry: None,
        }
    }

    /// Feeds bytes; complete events are appended to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let mut rest = bytes;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if let Some(stripped) = rest.strip_prefix(b"\n") {
                rest = stripped;
            }
        }
        while let Some(position) = rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
            self.extend_line(&rest[..position])?;
            let is_cr = rest[position] == b'\r';
            rest = &rest[position + 1..];
            if is_cr {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    None => self.after_cr = true,
                    Some(_) => {}
                }
            }
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, out)?;
        }
        self.extend_line(rest)
    }

    /// End of stream: a pending partial line is processed and a final dispatch done, as
    /// upstream's reader does.
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, out)?;
        }
        self.dispatch(out);
        Ok(())
    }

    fn extend_line(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        if self.line.len() + bytes.len() > self.max_line {
            return Err(SseError::LineTooLong(self.max_line));
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => {
                if self.data.len() + value.len() + 1 > self.max_event {
                    return Err(SseError::EventTooLarge(self.max_event));
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_owned()),
            "id" if !value.contains('\0') => self.last_id = Some(value.to_owned()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry = value.parse().ok()
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = self.event.take();
        let retry = self.retry.take();
        if !self.has_data {
            return;
        }
        self.has_data = false;
        out.push(SseEvent { event, id: self.last_id.clone(), data: std::mem::take(&mut self.data), retry });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::default();
        let mut out = Vec::new();
        for chunk in chunks {
            parser.push(chunk, &mut out).unwrap();
        }
        parser.finish(&mut out).unwrap();
        out
    }

    #[test]
    fn cloud_session_frames() {
        let text = b": connected\n\nid: 1\nevent: session.created\ndata: {\"sequence\":1}\n\n: keep-alive\n\nid: 2\nevent: assistant.message\ndata: {\"sequence\":2}\n\n";
        let events = parse_all(&[text]);
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[0],
            SseEvent {
                event: Some("session.created".into()),
                id: Some("1".into()),
                data: "{\"sequence\":1}".into(),
                retry: None
            }
        );
        assert_eq!(events[1].id.as_deref(), Some("2"));
    }

    #[test]
    fn line_ends_multiline_data_and_fields() {
        let events =
            parse_all(&[b"data:a\r\ndata: b\rdata:  c\n\nevent: error\ndata: {\"error\":\"x\"}\nretry: 1500\n\n"]);
        assert_eq!(events[0].data, "a\nb\n c");
        assert_eq!(events[0].event, None);
        assert_eq!(events[1].event.as_deref(), Some("error"));
        assert_eq!(events[1].retry, Some(1500));
    }

    #[test]
    fn cr_lf_split_across_chunks_is_one_line_end() {
        let events = parse_all(&[b"data: a\r", b"\ndata: b\r", b"\r", b"\n"]);
        assert_eq!(events, vec![SseEvent { data: "a\nb".into(), ..Default::default() }]);
    }

    #[test]
    fn no_data_no_event_and_ids_persist() {
        let events = parse_all(&[b"event: x\n\nid: 7\n\ndata: y\n\nid: bad\0id\ndata: z\n\n"]);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].event, None, "the event type resets at a dispatch without data");
        assert_eq!(events[0].id.as_deref(), Some("7"));
        assert_eq!(events[1].id.as_deref(), Some("7"), "an id with NUL is ignored");
    }

    #[test]
    fn end_of_stream_dispatches_the_partial_event() {
        assert_eq!(parse_all(&[b"data: tail"]), vec![SseEvent { data: "tail".into(), ..Default::default() }]);
    }

    #[test]
    fn bounds_end_the_connection() {
        let mut parser = SseParser::new(16, 32);
        let mut out = Vec::new();
        assert_eq!(parser.push(&[b'a'; 17], &mut out), Err(SseError::LineTooLong(16)));
        let mut parser = SseParser::new(16, 20);
        assert_eq!(parser.push(b"data: 0123456789\ndata: 0123456789\n", &mut out), Err(SseError::EventTooLarge(20)));
    }

    fn arbitrary_stream() -> impl Strategy<Value = Vec<u8>> {
        let line = prop_oneof![
            Just(b"data: {\"a\":1}".to_vec()),
            Just(b"data:x".to_vec()),
            Just(b"event: channel.delivery".to_vec()),
            Just(b"id: 42".to_vec()),
            Just(b": keep-alive".to_vec()),
            Just(b"retry: 10".to_vec()),
            Just(Vec::new()),
            proptest::collection::vec(any::<u8>(), 0..12),
        ];
        let end = prop_oneof![Just(b"\n".to_vec()), Just(b"\r\n".to_vec()), Just(b"\r".to_vec())];
        proptest::collection::vec((line, end), 0..24)
            .prop_map(|parts| parts.into_iter().flat_map(|(l, e)| l.into_iter().chain(e)).collect())
    }

    proptest! {
        #[test]
        fn any_chunking_yields_the_same_events(stream in arbitrary_stream(), cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
            let whole = parse_all(&[&stream]);
            let mut points: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut start = 0;
            for point in points {
                chunks.push(&stream[start..point]);
                start = point;
            }
            chunks.push(&stream[start..]);
            prop_assert_eq!(parse_all(&chunks), whole);
        }
    }
}
