//! Deliveries whose send stopped part-way: a text cut in several messages whose second message
//! failed (acked `failed`, so Cloud serves it again later) or whose wait outlasted its lease
//! (handed back). The messages that went out are remembered here, so the next attempt sends only
//! the rest instead of showing the first ones twice.
//!
//! Held in memory only, like the sent-cache: Cloud's delivery record stays the one source of
//! truth, and a restart (or another gateway claiming the next attempt) starts the text over.

use super::DeliveryKey;
use crate::util::recent::Recent;

/// Deliveries remembered at once; the oldest is forgotten first (its next attempt starts over).
const REMEMBERED: usize = 2048;

/// How far each stopped delivery got: messages sent, out of how many.
pub struct PartlySent {
    sent: Recent<(usize, usize)>,
}

impl Default for PartlySent {
    fn default() -> Self {
        Self { sent: Recent::new(REMEMBERED) }
    }
}

fn key_text((binding, delivery): &DeliveryKey) -> String {
    format!("{binding}\0{delivery}")
}

impl PartlySent {
    /// The delivery stopped after `sent` of its `total` messages went out.
    pub fn note(&mut self, key: &DeliveryKey, sent: usize, total: usize) {
        let key = key_text(key);
        self.sent.take(&key);
        if sent > 0 {
            self.sent.remember(key, (sent, total));
        }
    }

    /// The message an attempt of the delivery starts from: past the ones an earlier attempt sent,
    /// when the text is cut in as many messages as then (else from the first). Taken once: the
    /// attempt notes again where it stops.
    pub fn resume_from(&mut self, key: &DeliveryKey, total: usize) -> usize {
        match self.sent.take(&key_text(key)) {
            Some((sent, cut_in)) if cut_in == total => sent.min(total),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_resumes_after_what_went_out_once() {
        let mut partly = PartlySent::default();
        let key: DeliveryKey = ("b".into(), "d1".into());
        assert_eq!(partly.resume_from(&key, 3), 0, "nothing sent yet");
        partly.note(&key, 1, 3);
        assert_eq!(partly.resume_from(&key, 3), 1, "after the first message");
        assert_eq!(partly.resume_from(&key, 3), 0, "taken once");
        partly.note(&key, 2, 3);
        assert_eq!(partly.resume_from(&key, 4), 0, "cut differently: from the first");
        partly.note(&key, 0, 3);
        assert_eq!(partly.resume_from(&key, 3), 0, "a send that failed at its first message");
        for n in 0..=REMEMBERED {
            partly.note(&("b".into(), n.to_string().into()), 1, 2);
        }
        assert_eq!(partly.resume_from(&("b".into(), "0".into()), 2), 0, "the oldest is forgotten");
        assert_eq!(partly.resume_from(&("b".into(), REMEMBERED.to_string().into()), 2), 1);
    }
}
