//! Prometheus text exposition format 0.0.4: counter families keyed by label values, histograms, and how
//! names, label values and help text are written. Knows nothing of the controller's own metrics.

use crate::sync::lock;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// A family of counters keyed by their label values.
#[derive(Default)]
pub(crate) struct Counters(Mutex<BTreeMap<Vec<String>, u64>>);

impl Counters {
    pub(crate) fn inc(&self, values: &[&str]) {
        let key = values.iter().map(|v| v.to_string()).collect();
        *lock(&self.0).entry(key).or_default() += 1;
    }

    /// One sample per label set, named `name`, with `labels` zipped onto the stored values.
    pub(crate) fn render(&self, out: &mut String, name: &str, labels: &[&str]) {
        for (values, count) in lock(&self.0).iter() {
            let pairs: Vec<(&str, &str)> = labels
                .iter()
                .copied()
                .zip(values.iter().map(String::as_str))
                .collect();
            sample(out, name, &pairs, *count as f64);
        }
    }
}

/// Observations per bucket (not cumulative; rendering adds them up), for fixed upper bounds.
pub(crate) struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<u64>,
    count: u64,
    sum: f64,
}

impl Histogram {
    pub(crate) fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: vec![0; bounds.len()],
            count: 0,
            sum: 0.0,
        }
    }

    pub(crate) fn observe(&mut self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|bound| value <= *bound) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += value;
    }

    /// The `_bucket` (cumulative, ending in `+Inf`), `_sum` and `_count` samples of one label set.
    pub(crate) fn render(&self, out: &mut String, name: &str, labels: &[(&str, &str)]) {
        let mut cumulative = 0;
        let bucket = format!("{name}_bucket");
        for (bound, count) in self.bounds.iter().zip(self.buckets.iter()) {
            cumulative += count;
            let le = format_value(*bound);
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            sample(out, &bucket, &with_le, cumulative as f64);
        }
        let mut with_le = labels.to_vec();
        with_le.push(("le", "+Inf"));
        sample(out, &bucket, &with_le, self.count as f64);
        sample(out, &format!("{name}_sum"), labels, self.sum);
        sample(out, &format!("{name}_count"), labels, self.count as f64);
    }
}

/// The `# HELP` and `# TYPE` lines that open a family.
pub(crate) fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

pub(crate) fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        let pairs: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
            .collect();
        let _ = write!(out, "{{{}}}", pairs.join(","));
    }
    let _ = writeln!(out, " {}", format_value(value));
}

pub(crate) fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        value.to_string()
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A strict reader of what this module writes, for the tests of every metrics module.
#[cfg(test)]
pub(crate) mod reader {
    use std::collections::BTreeMap;

    /// One parsed sample: name, labels, value.
    pub(crate) type Sample = (String, BTreeMap<String, String>, f64);

    /// A strict reader of the exposition format: every sample must follow a `# TYPE` of its family.
    pub(crate) fn parse(text: &str) -> Vec<Sample> {
        let mut samples = Vec::new();
        let mut family = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                family = rest.split(' ').next().unwrap().to_string();
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let (name, rest) = match line.find(['{', ' ']) {
                Some(i) => line.split_at(i),
                None => panic!("no value: {line}"),
            };
            assert!(
                name.starts_with(&family),
                "{name} outside its family {family}"
            );
            let mut labels = BTreeMap::new();
            let mut chars = rest.chars().peekable();
            if chars.peek() == Some(&'{') {
                chars.next();
                loop {
                    let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                    assert_eq!(chars.next(), Some('"'), "{line}");
                    let mut value = String::new();
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => match chars.next() {
                                Some('n') => value.push('\n'),
                                Some(other) => value.push(other),
                                None => panic!("dangling escape: {line}"),
                            },
                            '"' => break,
                            c => value.push(c),
                        }
                    }
                    labels.insert(key, value);
                    match chars.next() {
                        Some(',') => continue,
                        Some('}') => break,
                        other => panic!("unexpected {other:?} in {line}"),
                    }
                }
            }
            let value: String = chars.collect();
            let value = match value.trim() {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
            };
            samples.push((name.to_string(), labels, value));
        }
        samples
    }

    pub(crate) fn find(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && l.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
    }
}

#[cfg(test)]
mod tests {
    use super::reader::{find, parse};
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_end_in_inf() {
        let mut h = Histogram::new(&[0.1, 1.0]);
        for value in [0.05, 0.5, 0.5, 3.0] {
            h.observe(value);
        }
        let mut out = String::new();
        header(&mut out, "h", "histogram", "help");
        h.render(&mut out, "h", &[("k", "v")]);
        let samples = parse(&out);
        assert_eq!(
            find(&samples, "h_bucket", &[("k", "v"), ("le", "0.1")]),
            Some(1.0)
        );
        assert_eq!(
            find(&samples, "h_bucket", &[("k", "v"), ("le", "1")]),
            Some(3.0)
        );
        assert_eq!(
            find(&samples, "h_bucket", &[("k", "v"), ("le", "+Inf")]),
            Some(4.0)
        );
        assert_eq!(find(&samples, "h_count", &[("k", "v")]), Some(4.0));
        assert_eq!(find(&samples, "h_sum", &[("k", "v")]), Some(4.05));
    }

    #[test]
    fn help_and_label_values_are_escaped() {
        let mut out = String::new();
        header(&mut out, "c", "counter", "a \\ b\nc");
        sample(&mut out, "c", &[("k", "a\"b\\c\nd")], 1.0);
        assert_eq!(
            out,
            "# HELP c a \\\\ b\\nc\n# TYPE c counter\nc{k=\"a\\\"b\\\\c\\nd\"} 1\n"
        );
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(0.25), "0.25");
    }
}
