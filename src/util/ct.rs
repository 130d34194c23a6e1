//! Constant-time comparison of presented secrets (admin token, webhook secrets, signatures), so
//! response timing tells an attacker nothing about how much of a guess was right.

use subtle::ConstantTimeEq;

/// `constantTimeStringEqual`: UTF-8 bytes, empty never matches, lengths compared first.
pub fn constant_time_equal(presented: &str, expected: &str) -> bool {
    if presented.is_empty() || expected.is_empty() || presented.len() != expected.len() {
        return false;
    }
    presented.as_bytes().ct_eq(expected.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_only_when_equal_and_non_empty() {
        assert!(constant_time_equal("secret", "secret"));
        assert!(!constant_time_equal("secret", "secreT"));
        assert!(!constant_time_equal("secre", "secret"));
        assert!(!constant_time_equal("", ""));
    }
}
