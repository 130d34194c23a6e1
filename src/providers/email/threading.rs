//! What a reply needs from the mail it answers, so every mail client threads it: the inbound
//! mail's `Subject` (answered as `Re: <subject>`), its `Message-ID` (the reply's `In-Reply-To`)
//! and its `References` chain (the reply's `References` is that chain plus the inbound id,
//! RFC 5322 §3.6.4). Remembered per conversation (sender address and thread id) when a mail
//! arrives, bounded, and in memory only: after a restart, or for a conversation the gateway
//! starts, a reply uses the configured subject and names the thread id it has.

use std::collections::VecDeque;

use serde_json::Value;

/// Conversations remembered; the oldest is forgotten first.
const CONVERSATIONS: usize = 1024;
/// Ids kept in a `References` header: the first (the thread's root) and the latest ones, as
/// RFC 5322 suggests when a chain must be shortened.
const MAX_REFERENCES: usize = 20;
/// Longest message id kept (a header line stays well inside 998 bytes).
const MAX_ID_BYTES: usize = 250;
/// Longest subject kept, in characters.
const MAX_SUBJECT_CHARS: usize = 200;

/// The inbound mail a conversation's next reply answers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Answered {
    subject: Option<String>,
    message_id: Option<String>,
    references: Vec<String>,
}

/// The threading headers of one reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyHeaders {
    pub subject: String,
    pub in_reply_to: Option<String>,
    /// Space-separated ids, or `None` for a mail that starts a conversation.
    pub references: Option<String>,
}

/// The last inbound mail of each recent conversation.
#[derive(Default)]
pub struct Conversations {
    entries: VecDeque<((String, String), Answered)>,
}

impl Conversations {
    /// Remembers the relay's fields of an inbound mail (`subject`, `messageId`, `inReplyTo`,
    /// `references`) for the conversation `(chat, thread)`.
    pub fn remember(&mut self, chat: &str, thread: &str, payload: &Value, message_id: &str) {
        let mut references: Vec<String> = match payload.get("references") {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).filter_map(message_id_of).collect(),
            Some(Value::String(text)) => text.split_whitespace().filter_map(message_id_of).collect(),
            _ => Vec::new(),
        };
        // A mail without References that answers one still names its parent.
        if references.is_empty() {
            references.extend(payload.get("inReplyTo").and_then(Value::as_str).and_then(message_id_of));
        }
        let key = (chat.to_owned(), thread.to_owned());
        // A mail without a subject keeps the conversation's subject.
        let earlier = self.entries.iter().find(|(k, _)| *k == key).and_then(|(_, a)| a.subject.clone());
        let answered = Answered {
            subject: payload.get("subject").and_then(Value::as_str).and_then(subject_of).or(earlier),
            message_id: message_id_of(message_id),
            references,
        };
        self.entries.retain(|(k, _)| *k != key);
        self.entries.push_back((key, answered));
        while self.entries.len() > CONVERSATIONS {
            self.entries.pop_front();
        }
    }

    /// The headers of a reply to `chat` in `thread`; `configured_subject` when nothing is known
    /// of the conversation (the gateway starts it, or it began before a restart).
    pub fn reply_headers(&self, chat: &str, thread: Option<&str>, configured_subject: &str) -> ReplyHeaders {
        let known = thread.and_then(|thread| {
            self.entries.iter().rev().find(|((c, t), _)| c == chat && t == thread).map(|(_, answered)| answered)
        });
        let Some(answered) = known else {
            let thread = thread.and_then(message_id_of);
            return ReplyHeaders {
                subject: configured_subject.to_owned(),
                in_reply_to: thread.clone(),
                references: thread,
            };
        };
        let mut chain = answered.references.clone();
        chain.extend(answered.message_id.clone());
        chain.dedup();
        if chain.len() > MAX_REFERENCES {
            chain.drain(1..chain.len() - (MAX_REFERENCES - 1));
        }
        ReplyHeaders {
            subject: answered.subject.as_deref().map_or_else(|| configured_subject.to_owned(), reply_subject),
            in_reply_to: answered.message_id.clone(),
            references: (!chain.is_empty()).then(|| chain.join(" ")),
        }
    }
}

/// A message id fit for a header: no control characters or spaces inside (such an id is
/// dropped, not repaired), within [`MAX_ID_BYTES`], in angle brackets.
fn message_id_of(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let bare = raw.strip_prefix('<').and_then(|r| r.strip_suffix('>')).unwrap_or(raw);
    let fits = !bare.is_empty()
        && bare.len() <= MAX_ID_BYTES
        && !bare.chars().any(|c| c.is_control() || c.is_whitespace() || matches!(c, '<' | '>'));
    fits.then(|| format!("<{bare}>"))
}

/// The inbound subject on one line, without control characters, bounded; `None` when blank.
fn subject_of(raw: &str) -> Option<String> {
    let words: Vec<&str> = raw.split(|c: char| c.is_control() || c.is_whitespace()).filter(|w| !w.is_empty()).collect();
    let line: String = words.join(" ").chars().take(MAX_SUBJECT_CHARS).collect();
    (!line.is_empty()).then_some(line)
}

/// `Re: <subject>`, once: a subject that already starts with `Re:` is kept as it is.
fn reply_subject(subject: &str) -> String {
    if subject.get(..3).is_some_and(|start| start.eq_ignore_ascii_case("re:")) {
        subject.to_owned()
    } else {
        format!("Re: {subject}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_reply_answers_the_inbound_mail() {
        let mut conversations = Conversations::default();
        let payload =
            json!({"subject": "Status", "inReplyTo": "<m1@x.test>", "references": "<root@x.test> <m1@x.test>"});
        conversations.remember("alice@x.test", "<m1@x.test>", &payload, "<m2@x.test>");
        let headers = conversations.reply_headers("alice@x.test", Some("<m1@x.test>"), "Open Cowork update");
        assert_eq!(headers.subject, "Re: Status");
        assert_eq!(headers.in_reply_to.as_deref(), Some("<m2@x.test>"), "the inbound Message-ID, not its parent");
        assert_eq!(headers.references.as_deref(), Some("<root@x.test> <m1@x.test> <m2@x.test>"));

        let again = json!({"subject": "RE: Status"});
        conversations.remember("alice@x.test", "<m1@x.test>", &again, "m3@x.test");
        let headers = conversations.reply_headers("alice@x.test", Some("<m1@x.test>"), "S");
        assert_eq!((headers.subject.as_str(), headers.in_reply_to.as_deref()), ("RE: Status", Some("<m3@x.test>")));
    }

    #[test]
    fn a_conversation_the_gateway_starts_uses_the_configured_subject() {
        let conversations = Conversations::default();
        let headers = conversations.reply_headers("bob@x.test", None, "Open Cowork update");
        assert_eq!(headers, ReplyHeaders { subject: "Open Cowork update".into(), in_reply_to: None, references: None });
        let headers = conversations.reply_headers("bob@x.test", Some("<t@x.test>"), "U");
        assert_eq!(headers.in_reply_to.as_deref(), Some("<t@x.test>"));
    }

    #[test]
    fn ids_with_control_characters_are_dropped_and_chains_are_bounded() {
        assert_eq!(message_id_of("<m0@x.test>\r\nCc: victim@x.test"), None);
        assert_eq!(message_id_of("<a b@x>"), None);
        assert_eq!(message_id_of(" m@x "), Some("<m@x>".into()));
        let mut conversations = Conversations::default();
        let chain: Vec<String> = (0..50).map(|n| format!("<r{n}@x>")).collect();
        let payload = json!({"references": chain, "subject": "Line\r\nBcc: eve@x"});
        conversations.remember("a@x", "t", &payload, "<last@x>");
        let headers = conversations.reply_headers("a@x", Some("t"), "S");
        let ids: Vec<&str> = headers.references.as_deref().unwrap().split(' ').collect();
        assert_eq!(ids.len(), MAX_REFERENCES);
        assert_eq!((ids[0], ids[MAX_REFERENCES - 1]), ("<r0@x>", "<last@x>"), "root and parent stay");
        assert_eq!(headers.subject, "Re: Line Bcc: eve@x", "one line");
    }

    #[test]
    fn conversations_are_bounded() {
        let mut conversations = Conversations::default();
        for n in 0..CONVERSATIONS + 10 {
            conversations.remember("a@x", &format!("t{n}"), &json!({"subject": "s"}), "<m@x>");
        }
        assert_eq!(conversations.entries.len(), CONVERSATIONS);
    }
}
