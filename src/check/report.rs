//! The outcome of each `check` step and its two renderings: text for people, one JSON object per step for
//! scripts.
//!
//! What must stay true: nothing secret leaves through here. Every rendering goes through [`Report::render`],
//! which replaces each value registered with [`Report::forbid`] (the ServiceAccount token, registry
//! passwords) wherever it appears, so a provider or registry that echoes a credential cannot leak it.

use serde::Serialize;

use crate::cloud::redact::REDACTED;

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    Pass,
    /// Passed, but something deserves attention (an unreachable issuer, credentials that already expired).
    Warn,
    Fail,
    /// Not run because an earlier step failed.
    Skip,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        }
    }
}

/// One step: what was checked, what was found, and what to change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Step {
    /// `configuration`, `token`, `issuer`, `exchange`, `pull` or `cluster`.
    pub name: &'static str,
    /// The principal a per-principal step is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    pub ok: bool,
    pub status: Status,
    /// What was found, one line per fact.
    pub detail: Vec<String>,
    /// What to change, with this ServiceAccount's values filled in; empty when nothing is to be done.
    pub fix: Vec<String>,
}

impl Step {
    pub(crate) fn new(name: &'static str, status: Status) -> Step {
        Step {
            name,
            principal: None,
            ok: status != Status::Fail,
            status,
            detail: Vec::new(),
            fix: Vec::new(),
        }
    }

    pub(crate) fn for_principal(mut self, principal: &str) -> Step {
        self.principal = Some(principal.to_string());
        self
    }

    pub(crate) fn detail(mut self, line: impl Into<String>) -> Step {
        self.detail.push(line.into());
        self
    }

    pub(crate) fn fix(mut self, line: impl Into<String>) -> Step {
        self.fix.push(line.into());
        self
    }

    /// Turns a passing step into a failing or warning one; a failure is never softened.
    pub(crate) fn set_status(&mut self, status: Status) {
        if self.status != Status::Fail {
            self.status = status;
            self.ok = status != Status::Fail;
        }
    }
}

/// Output format of `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    Text,
    Json,
}

/// Every step of one run, in order, and the values that must never be printed.
#[derive(Default)]
pub(crate) struct Report {
    pub steps: Vec<Step>,
    forbidden: Vec<String>,
}

impl Report {
    pub(crate) fn push(&mut self, step: Step) {
        self.steps.push(step);
    }

    /// Registers a value that must not appear in the output, whatever a peer echoes back.
    pub(crate) fn forbid(&mut self, secret: &str) {
        // Very short values would redact ordinary words; none of ours is that short.
        if secret.len() >= 8 && !self.forbidden.iter().any(|s| s == secret) {
            self.forbidden.push(secret.to_string());
        }
    }

    /// Whether every step passed (warnings and skips after a pass count as passed).
    pub(crate) fn passed(&self) -> bool {
        self.steps.iter().all(|s| s.ok)
    }

    /// The report as text or as JSON lines, with forbidden values redacted.
    pub(crate) fn render(&self, output: Output) -> String {
        let text = match output {
            Output::Text => render_text(&self.steps),
            Output::Json => render_json(&self.steps),
        };
        redact(text, &self.forbidden)
    }
}

fn render_text(steps: &[Step]) -> String {
    let mut out = String::new();
    for step in steps {
        let title = match &step.principal {
            Some(principal) => format!("{} {principal}", step.name),
            None => step.name.to_string(),
        };
        out.push_str(&format!("[{}] {title}\n", step.status.label()));
        for line in &step.detail {
            push_indented(&mut out, "      ", line);
        }
        for (i, line) in step.fix.iter().enumerate() {
            let lead = if i == 0 { "  fix " } else { "      " };
            push_indented(&mut out, lead, line);
        }
    }
    let failed = steps.iter().filter(|s| !s.ok).count();
    if failed == 0 {
        out.push_str("all checks passed\n");
    } else {
        let names: Vec<&str> = steps.iter().filter(|s| !s.ok).map(|s| s.name).collect();
        out.push_str(&format!("{failed} check(s) failed: {}\n", names.join(", ")));
    }
    out
}

/// Multi-line text (a JSON snippet) keeps its own indentation under the lead.
fn push_indented(out: &mut String, lead: &str, text: &str) {
    for (i, line) in text.lines().enumerate() {
        let prefix = if i == 0 { lead } else { "      " };
        out.push_str(prefix);
        out.push_str(line);
        out.push('\n');
    }
}

fn render_json(steps: &[Step]) -> String {
    let mut out = String::new();
    for step in steps {
        let mut value = serde_json::to_value(step).unwrap_or_default();
        // `detail` and `fix` are strings for scripts: one fact or instruction per line.
        for key in ["detail", "fix"] {
            if let Some(lines) = value.get(key).and_then(|v| v.as_array()) {
                let joined: Vec<&str> = lines.iter().filter_map(|l| l.as_str()).collect();
                value[key] = serde_json::Value::String(joined.join("\n"));
            }
        }
        out.push_str(&value.to_string());
        out.push('\n');
    }
    out
}

/// Replaces every forbidden value, and its base64 and percent-encoded forms, by `<redacted>`.
pub(crate) fn redact(mut text: String, forbidden: &[String]) -> String {
    use base64::Engine as _;
    for secret in forbidden {
        let encodings = [
            secret.clone(),
            base64::engine::general_purpose::STANDARD.encode(secret),
            crate::percent::encode(secret, b""),
            serde_json::to_string(secret)
                .unwrap_or_default()
                .trim_matches('"')
                .to_string(),
        ];
        for form in encodings.iter().filter(|f| f.len() >= 8) {
            if text.contains(form.as_str()) {
                text = text.replace(form.as_str(), REDACTED);
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mut report = Report::default();
        report.push(Step::new("configuration", Status::Pass).detail("registry: gcr.io"));
        report.push(
            Step::new("exchange", Status::Fail)
                .for_principal("puller@p.iam.gserviceaccount.com")
                .detail("sts token exchange: HTTP 400 invalid_grant: echo s3cr3t-token-value")
                .fix("grant it\n{\n  \"a\": 1\n}"),
        );
        report.push(Step::new("pull", Status::Skip));
        report.forbid("s3cr3t-token-value");
        report
    }

    #[test]
    fn text_names_each_step_and_the_failures() {
        let text = sample().render(Output::Text);
        assert_eq!(
            text,
            "[PASS] configuration\n      registry: gcr.io\n\
             [FAIL] exchange puller@p.iam.gserviceaccount.com\n      sts token exchange: HTTP 400 invalid_grant: echo <redacted>\n\
             \x20 fix grant it\n      {\n        \"a\": 1\n      }\n\
             [SKIP] pull\n1 check(s) failed: exchange\n"
        );
    }

    #[test]
    fn json_is_one_object_per_step() {
        let json = sample().render(Output::Json);
        let steps: Vec<serde_json::Value> = json
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(steps.len(), 3);
        assert_eq!(steps[1]["name"], "exchange");
        assert_eq!(steps[1]["ok"], false);
        assert_eq!(steps[1]["status"], "fail");
        assert_eq!(steps[1]["principal"], "puller@p.iam.gserviceaccount.com");
        assert_eq!(steps[1]["fix"], "grant it\n{\n  \"a\": 1\n}");
        assert_eq!(steps[2]["ok"], true);
        assert!(steps[0].get("principal").is_none());
        assert!(!json.contains("s3cr3t"));
    }

    #[test]
    fn redaction_covers_encoded_forms() {
        use base64::Engine as _;
        let secret = "pass/word+with=signs".to_string();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&secret);
        let text = format!("a {secret} b {b64} c pass%2Fword%2Bwith%3Dsigns");
        assert_eq!(
            redact(text, &[secret]),
            "a <redacted> b <redacted> c <redacted>"
        );
    }

    #[test]
    fn a_failure_is_never_softened() {
        let mut step = Step::new("issuer", Status::Fail);
        step.set_status(Status::Warn);
        assert_eq!((step.status, step.ok), (Status::Fail, false));
        let mut step = Step::new("issuer", Status::Pass);
        step.set_status(Status::Warn);
        assert_eq!((step.status, step.ok), (Status::Warn, true));
    }
}
