//! Readiness as named conditions (spec §2.8): the gateway is ready when it has started, is not
//! draining, at least one provider is healthy and every registered condition holds. Later
//! capabilities register their own conditions (the delivery subscription, Cloud auth).

use serde::Serialize;

/// A condition's current verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Condition {
    pub name: &'static str,
    pub ok: bool,
    /// Why it does not hold; redacted text, shown to admin callers only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The registered conditions, in registration order.
#[derive(Debug, Default, Clone)]
pub struct Readiness {
    conditions: Vec<Condition>,
}

impl Readiness {
    /// Registers or updates a condition.
    pub fn set(&mut self, name: &'static str, ok: bool, reason: Option<String>) {
        let condition = Condition { name, ok, reason: if ok { None } else { reason } };
        match self.conditions.iter_mut().find(|c| c.name == name) {
            Some(existing) => *existing = condition,
            None => self.conditions.push(condition),
        }
    }

    /// Whether `name` holds; an unregistered condition holds.
    pub fn holds(&self, name: &str) -> bool {
        self.conditions.iter().find(|c| c.name == name).is_none_or(|c| c.ok)
    }

    pub fn all_hold(&self) -> bool {
        self.conditions.iter().all(|c| c.ok)
    }

    pub fn conditions(&self) -> &[Condition] {
        &self.conditions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_update_in_place() {
        let mut readiness = Readiness::default();
        assert!(readiness.all_hold());
        readiness.set("delivery_subscription", false, Some("not connected".into()));
        readiness.set("cloud_auth", true, Some("ignored when ok".into()));
        assert!(!readiness.all_hold());
        readiness.set("delivery_subscription", true, None);
        assert!(readiness.all_hold());
        assert_eq!(readiness.conditions().len(), 2);
        assert_eq!(readiness.conditions()[1].reason, None);
    }
}
