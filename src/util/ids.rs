//! Random identifiers for message ids and other values that need to be unique, not secret.

/// A random id in UUID form (not cryptographic: message ids).
pub fn random_id() -> String {
    let hex = super::hex::encode(&fastrand::u128(..).to_le_bytes());
    format!("{}-{}-4{}-a{}-{}", &hex[..8], &hex[8..12], &hex[13..16], &hex[17..20], &hex[20..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_have_the_uuid_v4_shape() {
        let id = random_id();
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
        assert_eq!(&id[14..15], "4");
        assert_ne!(id, random_id());
    }
}
