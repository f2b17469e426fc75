//! Percent-encoding (RFC 3986): the one implementation behind every URL path, query, form body and SigV4
//! canonical string this process builds.
//!
//! Unreserved characters (`A-Z a-z 0-9 - _ . ~`) stay as they are; every other byte of the UTF-8 text becomes
//! `%XX` with upper-case hex, which is what SigV4 requires and what every server accepts.

/// Encodes every byte of `value` except the unreserved characters and those in `keep` (e.g. `b"/"` for a
/// path, `b"@"` for a Google service account in a path segment).
pub(crate) fn encode(value: &str, keep: &[u8]) -> String {
    encode_with(value, keep, false)
}

/// `application/x-www-form-urlencoded` as Python's `urllib.parse.urlencode` writes it (space as `+`), which is
/// what Google's and Microsoft's Python clients send.
pub(crate) fn encode_form_value(value: &str) -> String {
    encode_with(value, b"", true)
}

/// A form body from name/value pairs, in the given order.
pub(crate) fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(name, value)| format!("{}={}", encode_form_value(name), encode_form_value(value)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode_with(value: &str, keep: &[u8], space_as_plus: bool) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        let unreserved = byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~');
        if unreserved || keep.contains(&byte) {
            out.push(char::from(byte));
        } else if byte == b' ' && space_as_plus {
            out.push('+');
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_all_but_unreserved_and_kept_bytes() {
        assert_eq!(encode("a b/c:d~e_f.g-h", b""), "a%20b%2Fc%3Ad~e_f.g-h");
        assert_eq!(encode("/a b/", b"/"), "/a%20b/");
        assert_eq!(encode("a.b+c@d-e.com", b"@"), "a.b%2Bc@d-e.com");
        assert_eq!(encode("é=", b""), "%C3%A9%3D");
    }

    #[test]
    fn form_encoding_matches_pythons_urlencode() {
        assert_eq!(encode_form_value("a b/c:d~e_f.g-h"), "a+b%2Fc%3Ad~e_f.g-h");
        assert_eq!(encode_form_value("é="), "%C3%A9%3D");
        assert_eq!(form(&[("a b", "c&d"), ("e", "")]), "a+b=c%26d&e=");
    }
}
