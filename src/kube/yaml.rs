//! A reader for the block-style YAML subset that kubectl writes for kubeconfig files.
//!
//! Kubeconfig is the only YAML this controller reads, and kubectl writes it in a small, regular subset:
//! block mappings and sequences, plain and quoted scalars, empty flow collections and comments. Reading that
//! subset here keeps a YAML library (and its attack surface) out of the binary. Anything outside the subset
//! (anchors, tags, block scalars, multi-document files) is rejected with the line number, never guessed at.
//! JSON, being YAML too, is accepted as it is.

use serde_json::{Map, Value};

/// Parses a kubeconfig-style YAML (or JSON) document into a JSON value. Scalars become strings, except
/// `true`/`false` (booleans) and `null`/`~` (null).
pub fn parse(input: &str) -> Result<Value, String> {
    let trimmed = input.trim_start();
    if trimmed.starts_with('{') {
        return serde_json::from_str(trimmed).map_err(|e| format!("invalid JSON: {e}"));
    }
    let mut lines = Vec::new();
    for (index, raw) in input.lines().enumerate() {
        let number = index + 1;
        if raw.contains('\t') && raw.trim_start().starts_with('\t') {
            return Err(format!(
                "line {number}: tabs are not allowed for indentation"
            ));
        }
        let without_comment = strip_comment(raw);
        let text = without_comment.trim_end();
        if text.trim().is_empty() || text == "---" {
            continue;
        }
        if text.starts_with("...") || text.starts_with("%") {
            return Err(format!(
                "line {number}: directives and document markers are not supported"
            ));
        }
        let indent = text.len() - text.trim_start().len();
        lines.push(Line {
            indent,
            text: text.trim_start().to_string(),
            number,
        });
    }
    let mut parser = Parser { lines, pos: 0 };
    if parser.lines.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let indent = parser.lines[0].indent;
    let value = parser.block(indent)?;
    if let Some(line) = parser.lines.get(parser.pos) {
        return Err(format!("line {}: unexpected indentation", line.number));
    }
    Ok(value)
}

struct Line {
    indent: usize,
    text: String,
    number: usize,
}

struct Parser {
    lines: Vec<Line>,
    pos: usize,
}

impl Parser {
    fn block(&mut self, indent: usize) -> Result<Value, String> {
        match self.lines.get(self.pos) {
            Some(line) if is_sequence_item(&line.text) => self.sequence(indent),
            Some(_) => self.mapping(indent),
            None => Ok(Value::Null),
        }
    }

    fn sequence(&mut self, indent: usize) -> Result<Value, String> {
        let mut items = Vec::new();
        while let Some(line) = self.lines.get(self.pos) {
            if line.indent != indent || !is_sequence_item(&line.text) {
                if line.indent > indent {
                    return Err(format!("line {}: unexpected indentation", line.number));
                }
                break;
            }
            let rest = line.text[1..].trim_start().to_string();
            let number = line.number;
            if rest.is_empty() {
                self.pos += 1;
                items.push(self.nested(indent, number)?);
            } else if split_key(&rest).is_some() || is_sequence_item(&rest) {
                // "- key: value" opens a mapping whose keys line up after the dash.
                let offset = line.text.len() - rest.len();
                self.lines[self.pos] = Line {
                    indent: indent + offset,
                    text: rest,
                    number,
                };
                items.push(self.block(indent + offset)?);
            } else {
                self.pos += 1;
                items.push(scalar(&rest, number)?);
            }
        }
        Ok(Value::Array(items))
    }

    fn mapping(&mut self, indent: usize) -> Result<Value, String> {
        let mut map = Map::new();
        while let Some(line) = self.lines.get(self.pos) {
            if line.indent < indent || (line.indent == indent && is_sequence_item(&line.text)) {
                break;
            }
            if line.indent > indent {
                return Err(format!("line {}: unexpected indentation", line.number));
            }
            let number = line.number;
            let Some((key, value)) = split_key(&line.text) else {
                return Err(format!("line {number}: expected \"key: value\""));
            };
            let key = unquote_key(key, number)?;
            let value = value.to_string();
            self.pos += 1;
            let parsed = if value.is_empty() {
                self.nested(indent, number)?
            } else {
                scalar(&value, number)?
            };
            if map.insert(key.clone(), parsed).is_some() {
                return Err(format!("line {number}: duplicate key {key:?}"));
            }
        }
        Ok(Value::Object(map))
    }

    /// The value of a key or dash with nothing after it: a more indented block, a sequence at the same
    /// indentation (kubectl writes `clusters:` followed by `- cluster:` at the key's column), or null.
    fn nested(&mut self, indent: usize, _number: usize) -> Result<Value, String> {
        match self.lines.get(self.pos) {
            Some(next) if next.indent > indent => {
                let child = next.indent;
                self.block(child)
            }
            Some(next) if next.indent == indent && is_sequence_item(&next.text) => {
                self.sequence(indent)
            }
            _ => Ok(Value::Null),
        }
    }
}

fn is_sequence_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

/// Splits `key: value` at the first colon outside quotes that is followed by a space or the end of line.
fn split_key(text: &str) -> Option<(&str, &str)> {
    let bytes = text.as_bytes();
    let mut quote = None;
    for (i, &b) in bytes.iter().enumerate() {
        match (quote, b) {
            (None, b'"') | (None, b'\'') if i == 0 => quote = Some(b),
            (Some(q), c) if c == q => quote = None,
            (None, b':') if i + 1 == bytes.len() || bytes[i + 1] == b' ' => {
                return Some((text[..i].trim_end(), text[i + 1..].trim()));
            }
            _ => {}
        }
    }
    None
}

fn strip_comment(raw: &str) -> &str {
    let mut quote = None;
    let mut previous = b' ';
    for (i, b) in raw.bytes().enumerate() {
        match (quote, b) {
            (None, b'"') | (None, b'\'') => quote = Some(b),
            (Some(q), c) if c == q => quote = None,
            (None, b'#') if previous == b' ' || i == 0 => return &raw[..i],
            _ => {}
        }
        previous = b;
    }
    raw
}

fn unquote_key(key: &str, number: usize) -> Result<String, String> {
    match scalar(key, number)? {
        Value::String(s) => Ok(s),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Ok("null".to_string()),
        _ => Err(format!("line {number}: unsupported key")),
    }
}

fn scalar(text: &str, number: usize) -> Result<Value, String> {
    let text = text.trim();
    let unsupported = |what: &str| {
        Err(format!(
            "line {number}: {what} are not supported in kubeconfig files"
        ))
    };
    match text.as_bytes().first() {
        Some(b'"') => return double_quoted(text, number).map(Value::String),
        Some(b'\'') => return single_quoted(text, number).map(Value::String),
        Some(b'{') | Some(b'[') => return flow(text, number),
        Some(b'&') | Some(b'*') => return unsupported("anchors and aliases"),
        Some(b'!') => return unsupported("tags"),
        Some(b'|') | Some(b'>') => return unsupported("block scalars"),
        _ => {}
    }
    Ok(match text {
        "true" | "True" | "TRUE" => Value::Bool(true),
        "false" | "False" | "FALSE" => Value::Bool(false),
        "null" | "Null" | "NULL" | "~" => Value::Null,
        _ => Value::String(text.to_string()),
    })
}

fn single_quoted(text: &str, number: usize) -> Result<String, String> {
    let inner = text
        .strip_prefix('\'')
        .and_then(|t| t.strip_suffix('\''))
        .ok_or_else(|| format!("line {number}: unterminated single-quoted string"))?;
    Ok(inner.replace("''", "'"))
}

fn double_quoted(text: &str, number: usize) -> Result<String, String> {
    let inner = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .filter(|_| text.len() >= 2)
        .ok_or_else(|| format!("line {number}: unterminated double-quoted string"))?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some('"') => out.push('"'),
            Some('\\') => out.push('\\'),
            Some('/') => out.push('/'),
            Some(' ') => out.push(' '),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let code = u32::from_str_radix(&hex, 16)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or_else(|| format!("line {number}: bad \\u escape"))?;
                out.push(code);
            }
            _ => {
                return Err(format!(
                    "line {number}: unsupported escape in double-quoted string"
                ))
            }
        }
    }
    Ok(out)
}

/// Flow collections: `{}`, `[]`, and flat lists of scalars such as `[a, "b"]`.
fn flow(text: &str, number: usize) -> Result<Value, String> {
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        return Ok(value);
    }
    if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        if !inner.contains(['[', '{', ']', '}']) {
            return inner
                .split(',')
                .map(|item| scalar(item, number))
                .filter(|item| !matches!(item, Ok(Value::String(s)) if s.is_empty()))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array);
        }
    }
    if let Some(inner) = text.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
        if !inner.contains(['[', '{', ']', '}']) {
            let mut map = Map::new();
            for entry in inner.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                let Some((key, value)) = split_key(entry) else {
                    return Err(format!(
                        "line {number}: expected \"key: value\" in a flow mapping"
                    ));
                };
                map.insert(unquote_key(key, number)?, scalar(value, number)?);
            }
            return Ok(Value::Object(map));
        }
    }
    Err(format!(
        "line {number}: nested flow collections are not supported in kubeconfig files"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_what_kubectl_writes() {
        let input = r#"apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: LS0tLS1C
    server: https://127.0.0.1:6443
  name: test
contexts:
- context:
    cluster: test
    namespace: "ns-1"
    user: admin # a comment
  name: test
current-context: test
kind: Config
preferences: {}
users:
- name: admin
  user:
    token: 'it''s # not a comment'
    exec:
      args: [get-token, "--x"]
      env: null
"#;
        let value = parse(input).unwrap();
        assert_eq!(
            value,
            json!({
                "apiVersion": "v1",
                "clusters": [{"cluster": {"certificate-authority-data": "LS0tLS1C", "server": "https://127.0.0.1:6443"}, "name": "test"}],
                "contexts": [{"context": {"cluster": "test", "namespace": "ns-1", "user": "admin"}, "name": "test"}],
                "current-context": "test",
                "kind": "Config",
                "preferences": {},
                "users": [{"name": "admin", "user": {"token": "it's # not a comment", "exec": {"args": ["get-token", "--x"], "env": null}}}],
            })
        );
    }

    #[test]
    fn indented_sequences_and_scalar_items() {
        let value = parse("a:\n  - x\n  - y: 1\n    z: \"q\\n\"\nb: true\n").unwrap();
        assert_eq!(
            value,
            json!({"a": ["x", {"y": "1", "z": "q\n"}], "b": true})
        );
    }

    #[test]
    fn json_is_yaml_too() {
        assert_eq!(
            parse(r#"{"current-context":"x"}"#).unwrap(),
            json!({"current-context": "x"})
        );
    }

    #[test]
    fn rejects_what_it_does_not_understand() {
        for (input, want) in [
            ("a: &anchor x\n", "anchors"),
            ("a: !!str x\n", "tags"),
            ("a: |\n  text\n", "block scalars"),
            ("a: x\n   b: y\n", "line 2: unexpected indentation"),
            ("a: x\na: y\n", "duplicate key"),
            ("just text\n", "expected \"key: value\""),
            ("a: \"open\n", "unterminated"),
        ] {
            let err = parse(input).unwrap_err();
            assert!(err.contains(want), "{input:?}: {err}");
        }
    }

    #[test]
    fn empty_document_is_an_empty_mapping() {
        assert_eq!(parse("# nothing\n---\n").unwrap(), json!({}));
    }
}
