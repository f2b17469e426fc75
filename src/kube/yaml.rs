//! Kubeconfig YAML to a JSON value, read by a complete YAML 1.2 parser (saphyr-parser).
//!
//! kubectl reads kubeconfig with a full YAML parser, and the tools that write kubeconfigs use all of it:
//! gcloud wraps long plain scalars over several lines, Rancher writes double-quoted strings continued with a
//! backslash, others write block scalars, flow mappings or anchors. Only a real parser reads all of these the
//! way kubectl does, so the scanning is left to one; this module only turns its events into a JSON value.
//!
//! Scalars become JSON the way kubectl's typed decoding sees them for the fields a kubeconfig has: plain
//! `true`/`false` are booleans, plain `null`, `~` and empty values are null, everything else — numbers
//! included — stays the string it was written as (a cluster named `0123` keeps its leading zero). Quoted and
//! block scalars are always strings. Anchors and aliases are resolved; a second document is refused.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use serde_json::{Map, Value};

/// Parses a kubeconfig document (YAML or JSON) into a JSON value; errors name the line.
pub(crate) fn parse(input: &str) -> Result<Value, String> {
    let mut builder = Builder::default();
    for next in Parser::new_from_str(input) {
        let (event, span) = next.map_err(|e| {
            format!(
                "line {} column {}: {}",
                e.marker().line(),
                e.marker().col() + 1,
                e.info()
            )
        })?;
        builder.push(event, span)?;
    }
    match builder.document {
        None | Some(Value::Null) => Ok(Value::Object(Map::new())),
        Some(value) => Ok(value),
    }
}

/// A collection being filled: a sequence, or a mapping waiting for its next key or value.
enum Open {
    Sequence {
        items: Vec<Value>,
        anchor: usize,
    },
    Mapping {
        map: Map<String, Value>,
        key: Option<String>,
        anchor: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    anchors: HashMap<usize, Value>,
    document: Option<Value>,
    documents: usize,
}

impl Builder {
    fn push(&mut self, event: Event<'_>, span: Span) -> Result<(), String> {
        let line = span.start.line();
        match event {
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(format!(
                        "line {line}: a kubeconfig holds one YAML document, this is a second one"
                    ));
                }
                Ok(())
            }
            Event::Scalar(text, style, anchor, tag) => {
                let value = match tag {
                    Some(tag) if !tag.is_yaml_core_schema() => {
                        return Err(format!(
                            "line {line}: the tag {}{} is not understood",
                            tag.handle, tag.suffix
                        ))
                    }
                    Some(tag) => tagged_scalar(&text, &tag.suffix, line)?,
                    None => scalar(&text, style),
                };
                self.value(value, anchor, line)
            }
            Event::Alias(id) => {
                let value = self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| format!("line {line}: alias of an unknown anchor"))?;
                self.value(value, 0, line)
            }
            Event::SequenceStart(anchor, _) => {
                self.stack.push(Open::Sequence {
                    items: Vec::new(),
                    anchor,
                });
                Ok(())
            }
            Event::MappingStart(anchor, _) => {
                self.stack.push(Open::Mapping {
                    map: Map::new(),
                    key: None,
                    anchor,
                });
                Ok(())
            }
            Event::SequenceEnd => match self.stack.pop() {
                Some(Open::Sequence { items, anchor }) => {
                    self.value(Value::Array(items), anchor, line)
                }
                _ => Err(format!("line {line}: unbalanced sequence")),
            },
            Event::MappingEnd => match self.stack.pop() {
                Some(Open::Mapping { map, anchor, .. }) => {
                    self.value(Value::Object(map), anchor, line)
                }
                _ => Err(format!("line {line}: unbalanced mapping")),
            },
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => Ok(()),
        }
    }

    /// Places a finished value: into the open collection, or as the document.
    fn value(&mut self, value: Value, anchor: usize, line: usize) -> Result<(), String> {
        if anchor != 0 {
            self.anchors.insert(anchor, value.clone());
        }
        match self.stack.last_mut() {
            None => {
                self.document = Some(value);
                Ok(())
            }
            Some(Open::Sequence { items, .. }) => {
                items.push(value);
                Ok(())
            }
            Some(Open::Mapping { map, key, .. }) => match key.take() {
                None => {
                    *key = Some(key_text(value, line)?);
                    Ok(())
                }
                Some(name) => {
                    if map.contains_key(&name) {
                        return Err(format!("line {line}: duplicate key {name:?}"));
                    }
                    map.insert(name, value);
                    Ok(())
                }
            },
        }
    }
}

fn key_text(value: Value, line: usize) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Ok(String::new()),
        _ => Err(format!(
            "line {line}: a mapping key must be a scalar in a kubeconfig"
        )),
    }
}

fn scalar(text: &str, style: ScalarStyle) -> Value {
    if style != ScalarStyle::Plain {
        return Value::String(text.to_string());
    }
    match text {
        "true" | "True" | "TRUE" => Value::Bool(true),
        "false" | "False" | "FALSE" => Value::Bool(false),
        "" | "null" | "Null" | "NULL" | "~" => Value::Null,
        _ => Value::String(text.to_string()),
    }
}

/// A scalar with an explicit core-schema tag (`!!str 0123`, `!!bool true`).
fn tagged_scalar(text: &str, suffix: &str, line: usize) -> Result<Value, String> {
    match suffix {
        "str" | "int" | "float" | "binary" | "timestamp" => Ok(Value::String(text.to_string())),
        "bool" => match scalar(text, ScalarStyle::Plain) {
            Value::Bool(b) => Ok(Value::Bool(b)),
            _ => Err(format!("line {line}: {text:?} is not a boolean")),
        },
        "null" => Ok(Value::Null),
        other => Err(format!("line {line}: the tag !!{other} is not understood")),
    }
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
    fn what_the_old_subset_reader_got_wrong() {
        // gcloud wraps a long plain scalar; Rancher continues a double-quoted one with a backslash; a flow
        // mapping may hold commas inside quotes; block scalars are strings.
        let input = "a:\n  hint: Install gke-gcloud-auth-plugin for use with kubectl by following\n    https://cloud.google.com/x\nb: \"LS0t\\\n  LS1C\"\nc: {x: \"1,2\", y: [a, 'b,c']}\nd: |\n  line one\n  line two\n";
        assert_eq!(
            parse(input).unwrap(),
            json!({
                "a": {"hint": "Install gke-gcloud-auth-plugin for use with kubectl by following https://cloud.google.com/x"},
                "b": "LS0tLS1C",
                "c": {"x": "1,2", "y": ["a", "b,c"]},
                "d": "line one\nline two\n",
            })
        );
    }

    #[test]
    fn scalars_keep_their_text_except_booleans_and_null() {
        assert_eq!(
            parse(
                "a: 0123\nb: 1.50\nc: true\nd: ~\ne:\nf: 'true'\ng: !!str 12\nh: &x [1]\ni: *x\n"
            )
            .unwrap(),
            json!({"a": "0123", "b": "1.50", "c": true, "d": null, "e": null, "f": "true", "g": "12", "h": ["1"], "i": ["1"]})
        );
    }

    #[test]
    fn json_is_yaml_too() {
        assert_eq!(
            parse(r#"{"current-context":"x","users":[{"name":"u"}]}"#).unwrap(),
            json!({"current-context": "x", "users": [{"name": "u"}]})
        );
    }

    #[test]
    fn errors_name_the_line() {
        for (input, want) in [
            ("a: x\na: y\n", "line 2: duplicate key \"a\""),
            ("a:\n\tb: x\n", "line 2"),
            (
                "a: \"open\n",
                "line 1 column 4: while scanning a quoted scalar",
            ),
            (
                "a: x\n---\nb: y\n",
                "line 2: a kubeconfig holds one YAML document",
            ),
            (
                "a: !custom x\n",
                "line 1: the tag !custom is not understood",
            ),
        ] {
            let err = parse(input).unwrap_err();
            assert!(err.starts_with(want), "{input:?}: {err}");
        }
    }

    #[test]
    fn empty_document_is_an_empty_mapping() {
        assert_eq!(parse("# nothing\n---\n").unwrap(), json!({}));
        assert_eq!(parse("").unwrap(), json!({}));
    }
}
