//! Log lines on stderr, as text or JSON, from a small [`log::Log`] instead of a logging framework.
//!
//! Each record becomes exactly one line, written with one `write_all` under the stderr lock, so lines from
//! different threads never interleave. Only this crate logs at debug and trace: dependencies are capped at
//! warn, because ureq prints request headers — `Authorization` among them — at debug and trace.
//!
//! Structured fields come from `log`'s key-value support and appear as `key=value` (text) or as members of the
//! JSON object. The controller uses these names, so that one ServiceAccount's story can be filtered out of the
//! logs: `namespace`, `serviceaccount`, `secret`, `pod`. For example
//! `log::info!(namespace = ns, serviceaccount = sa, secret = name; "secret created")` prints
//!
//! ```text
//! 2026-11-28T16:00:00.123Z INFO  image_pull_secrets_provisioner::reconcile: secret created namespace=ns serviceaccount=sa secret=name
//! {"ts":"2026-11-28T16:00:00.123Z","level":"info","target":"image_pull_secrets_provisioner::reconcile","msg":"secret created","namespace":"ns","serviceaccount":"sa","secret":"name"}
//! ```
//!
//! A field named like one of the JSON line's own members (`ts`, `level`, `target`, `msg`) is written as
//! `field.<name>` so it cannot hide them.

use std::io::Write;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use log::kv::{self, Key, Value, VisitSource, VisitValue};
use log::{LevelFilter, Log, Metadata, Record};

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        match value {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format {other:?}: choose text or json")),
        }
    }
}

/// Installs the logger for the whole process; fails if a logger is already installed.
pub fn init(level: LevelFilter, format: LogFormat) -> Result<(), String> {
    log::set_boxed_logger(Box::new(Logger { level, format }))
        .map_err(|_| "a logger is already installed".to_string())?;
    log::set_max_level(level);
    Ok(())
}

struct Logger {
    level: LevelFilter,
    format: LogFormat,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= max_level_for(metadata.target(), self.level)
    }

    fn log(&self, record: &Record) {
        // The log macros do not ask `enabled` first, so the cap on dependencies is enforced here.
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format_line(self.format, Utc::now(), record);
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// The most verbose level shown for `target`: the configured one for this crate, at most warn for the rest.
fn max_level_for(target: &str, level: LevelFilter) -> LevelFilter {
    let crate_name = module_path!().split("::").next().unwrap_or_default();
    let own = target == crate_name
        || target
            .strip_prefix(crate_name)
            .is_some_and(|rest| rest.starts_with("::"));
    if own {
        level
    } else {
        level.min(LevelFilter::Warn)
    }
}

/// One complete log line, newline included.
fn format_line(format: LogFormat, now: DateTime<Utc>, record: &Record) -> String {
    let ts = now.to_rfc3339_opts(SecondsFormat::Millis, true);
    let mut fields = Fields::default();
    // The visitor never fails; a broken Source only loses its fields.
    let _ = record.key_values().visit(&mut fields);
    let mut line = match format {
        LogFormat::Text => format_text(&ts, record, &fields.0),
        LogFormat::Json => format_json(&ts, record, &fields.0),
    };
    line.push('\n');
    line
}

fn format_text(ts: &str, record: &Record, fields: &[(String, serde_json::Value)]) -> String {
    let message = escape_text(&record.args().to_string());
    let mut line = format!("{ts} {:<5} {}: {message}", record.level(), record.target());
    for (key, value) in fields {
        let text = match value {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        line.push_str(&format!(" {key}={}", quote_text(&text)));
    }
    line
}

fn format_json(ts: &str, record: &Record, fields: &[(String, serde_json::Value)]) -> String {
    // Written member by member rather than through a map, so that ts, level, target and msg come first.
    let mut line = format!(
        "{{\"ts\":{},\"level\":{},\"target\":{},\"msg\":{}",
        json_string(ts),
        json_string(&record.level().as_str().to_ascii_lowercase()),
        json_string(record.target()),
        json_string(&record.args().to_string())
    );
    for (key, value) in fields {
        let key = match key.as_str() {
            "ts" | "level" | "target" | "msg" => format!("field.{key}"),
            _ => key.clone(),
        };
        line.push_str(&format!(",{}:{value}", json_string(&key)));
    }
    line.push('}');
    line
}

fn json_string(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

/// Control characters would split one record over several lines.
fn escape_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A value is quoted when it would otherwise be ambiguous in `key=value` form.
fn quote_text(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '=');
    if plain {
        value.to_string()
    } else {
        format!("{value:?}")
    }
}

/// Key-value fields in the order they were given, converted to JSON values.
#[derive(Default)]
struct Fields(Vec<(String, serde_json::Value)>);

impl<'kvs> VisitSource<'kvs> for Fields {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), kv::Error> {
        let mut json = JsonValue(serde_json::Value::Null);
        value.visit(&mut json)?;
        self.0.push((key.as_str().to_string(), json.0));
        Ok(())
    }
}

/// Numbers and booleans stay typed in JSON; everything else becomes its display string.
struct JsonValue(serde_json::Value);

impl<'v> VisitValue<'v> for JsonValue {
    fn visit_any(&mut self, value: Value) -> Result<(), kv::Error> {
        self.0 = serde_json::Value::String(value.to_string());
        Ok(())
    }
    fn visit_u64(&mut self, value: u64) -> Result<(), kv::Error> {
        self.0 = value.into();
        Ok(())
    }
    fn visit_i64(&mut self, value: i64) -> Result<(), kv::Error> {
        self.0 = value.into();
        Ok(())
    }
    fn visit_f64(&mut self, value: f64) -> Result<(), kv::Error> {
        // NaN and infinities have no JSON form and become null.
        self.0 = value.into();
        Ok(())
    }
    fn visit_bool(&mut self, value: bool) -> Result<(), kv::Error> {
        self.0 = value.into();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use log::Level;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 16, 0, 0).unwrap() + chrono::Duration::milliseconds(123)
    }

    fn line(
        format: LogFormat,
        level: Level,
        message: std::fmt::Arguments,
        kvs: &dyn kv::Source,
    ) -> String {
        let record = Record::builder()
            .level(level)
            .target("image_pull_secrets_provisioner::reconcile")
            .args(message)
            .key_values(kvs)
            .build();
        format_line(format, at(), &record)
    }

    #[test]
    fn text_lines_carry_time_level_target_message_and_fields() {
        let kvs = [
            ("namespace", Value::from("ns")),
            ("serviceaccount", Value::from("sa")),
            ("attempt", Value::from(3u64)),
        ];
        let got = line(
            LogFormat::Text,
            Level::Info,
            format_args!("secret created"),
            &kvs,
        );
        assert_eq!(
            got,
            "2026-11-28T16:00:00.123Z INFO  image_pull_secrets_provisioner::reconcile: secret created namespace=ns serviceaccount=sa attempt=3\n"
        );
    }

    #[test]
    fn text_lines_stay_one_line_and_quote_ambiguous_values() {
        let kvs = [
            ("secret", Value::from("a b")),
            ("pod", Value::from("x=\"y\"")),
        ];
        let got = line(
            LogFormat::Text,
            Level::Warn,
            format_args!("first\nsecond \"quoted\""),
            &kvs,
        );
        assert_eq!(
            got,
            "2026-11-28T16:00:00.123Z WARN  image_pull_secrets_provisioner::reconcile: first\\nsecond \"quoted\" secret=\"a b\" pod=\"x=\\\"y\\\"\"\n"
        );
        assert_eq!(got.matches('\n').count(), 1);
    }

    #[test]
    fn json_lines_are_escaped_objects_with_typed_fields() {
        let kvs = [
            ("namespace", Value::from("n\"s\\")),
            ("attempt", Value::from(2i64)),
            ("leader", Value::from(true)),
            ("msg", Value::from("shadow")),
        ];
        let got = line(
            LogFormat::Json,
            Level::Error,
            format_args!("cannot \"write\"\n\u{1}"),
            &kvs,
        );
        assert!(
            got.ends_with("}\n") && got.matches('\n').count() == 1,
            "{got}"
        );
        let parsed: serde_json::Value = serde_json::from_str(&got).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({
                "ts": "2026-11-28T16:00:00.123Z",
                "level": "error",
                "target": "image_pull_secrets_provisioner::reconcile",
                "msg": "cannot \"write\"\n\u{1}",
                "namespace": "n\"s\\",
                "attempt": 2,
                "leader": true,
                "field.msg": "shadow",
            })
        );
        assert!(
            got.starts_with("{\"ts\":"),
            "members keep their order: {got}"
        );
    }

    #[test]
    fn dependencies_are_capped_at_warn() {
        let own = "image_pull_secrets_provisioner::runtime::leader";
        assert_eq!(max_level_for(own, LevelFilter::Trace), LevelFilter::Trace);
        assert_eq!(
            max_level_for("image_pull_secrets_provisioner", LevelFilter::Debug),
            LevelFilter::Debug
        );
        assert_eq!(
            max_level_for("ureq::unversioned::transport", LevelFilter::Trace),
            LevelFilter::Warn
        );
        assert_eq!(
            max_level_for("image_pull_secrets_provisioner_evil", LevelFilter::Trace),
            LevelFilter::Warn
        );
        assert_eq!(
            max_level_for("rustls::client", LevelFilter::Error),
            LevelFilter::Error
        );
    }

    #[test]
    fn formats_parse_and_unknown_ones_list_the_choices() {
        assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        let err = "yaml".parse::<LogFormat>().unwrap_err();
        assert!(err.contains("text") && err.contains("json"), "{err}");
    }
}
