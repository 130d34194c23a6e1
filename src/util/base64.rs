//! Base64 without a dependency: the URL-safe alphabet for tokens and ids, the standard alphabet
//! for artifact bodies, and a decoder that accepts either (Cloud and platforms use both).

const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Unpadded base64url (RFC 4648 §5).
pub fn encode_url(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let value = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(BASE64URL[((value >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Decodes base64 in either alphabet (standard or URL-safe), with or without padding; `None` on
/// a bad character.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    const INVALID: u8 = 0xff;
    static TABLE: std::sync::OnceLock<[u8; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = [INVALID; 256];
        for (value, byte) in BASE64URL.iter().enumerate() {
            table[usize::from(*byte)] = value as u8;
        }
        table[usize::from(b'+')] = 62;
        table[usize::from(b'/')] = 63;
        table
    });
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut buffer = 0u32;
    let mut bits = 0;
    for byte in text.bytes() {
        let value = table[usize::from(byte)];
        if value == INVALID {
            return None;
        }
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    Some(out)
}

/// Standard base64 with padding (RFC 4648 §4), for artifact bodies (the relay's files, the dev
/// Cloud's artifacts).
#[cfg(any(feature = "webhook", feature = "devcloud"))]
pub fn encode_standard(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let value = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((value >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_round_trip() {
        for text in ["", "Yes", "No way", "é😀"] {
            assert_eq!(decode(&encode_url(text.as_bytes())).unwrap(), text.as_bytes());
        }
        assert_eq!(encode_url(b"Yes"), "WWVz");
        assert_eq!(decode("!!"), None);
        assert_eq!(decode("aGVsbG8/+w==").unwrap(), decode("aGVsbG8_-w").unwrap(), "both alphabets");
    }

    #[test]
    #[cfg(any(feature = "webhook", feature = "devcloud"))]
    fn standard_alphabet_is_padded() {
        assert_eq!(encode_standard(b"hello?"), "aGVsbG8/");
        assert_eq!(encode_standard(b"hi"), "aGk=");
        assert_eq!(decode(&encode_standard(b"\xfb\xff")).unwrap(), b"\xfb\xff");
    }
}
