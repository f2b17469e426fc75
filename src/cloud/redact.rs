//! Remote text made safe to quote in an error or event: every secret of the exchange replaced, one line,
//! capped. The one rule for all providers, because a proxy or a misbehaving server may echo a request back.

/// How much of a remote message or body an error quotes: enough for a provider's sentence, short enough for
/// a Kubernetes event.
pub(crate) const MAX_QUOTE: usize = 300;

/// The replacement of a secret in quoted text.
pub(crate) const REDACTED: &str = "<redacted>";

/// `text` with every non-empty secret replaced by `<redacted>` (longest first, so a secret that contains
/// another is replaced whole), whitespace folded to single spaces, control characters dropped, and cut to
/// [`MAX_QUOTE`] characters with `…`. Empty when nothing is left.
pub(crate) fn quote(text: &str, secrets: &[&str]) -> String {
    let mut secrets: Vec<&str> = secrets.iter().copied().filter(|s| !s.is_empty()).collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut text = text.to_string();
    for secret in secrets {
        text = text.replace(secret, REDACTED);
    }
    let folded: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    match folded.char_indices().nth(MAX_QUOTE) {
        Some((cut, _)) => format!("{}…", &folded[..cut]),
        None => folded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_replaced_whatever_their_length() {
        assert_eq!(
            quote("a abc b abcdef c", &["abc", "abcdef", ""]),
            "a <redacted> b <redacted> c"
        );
        assert_eq!(quote("pin 12 ok", &["12"]), "pin <redacted> ok");
    }

    #[test]
    fn text_is_one_line_and_capped() {
        assert_eq!(
            quote("  line one\n\tline\r\ntwo \u{7}x ", &[]),
            "line one line two x"
        );
        assert_eq!(quote(" \n ", &[]), "");
        let long = "é".repeat(MAX_QUOTE + 5);
        let quoted = quote(&long, &[]);
        assert_eq!(quoted.chars().count(), MAX_QUOTE + 1);
        assert!(quoted.ends_with('…'));
    }
}
