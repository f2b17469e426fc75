//! A small XML reader for AWS query-protocol answers (STS responses, and the errors moto and AWS send).
//!
//! It builds a tree of elements and the callers look values up by element path, so text that merely looks
//! like markup — `&lt;SecretAccessKey&gt;` inside a `Message`, a CDATA section, a comment — can never be
//! mistaken for an element. Supported: the XML declaration and processing instructions (skipped), comments,
//! CDATA, attributes (skipped), namespace prefixes (dropped), the five predefined entities and character
//! references. Rejected: DOCTYPE (and with it every user-defined entity), unknown entities, mismatched tags,
//! nesting deeper than [`MAX_DEPTH`].

/// Deeper documents are refused: AWS answers nest four or five levels, and the limit bounds recursion.
pub(crate) const MAX_DEPTH: usize = 32;

/// An element: its local name (namespace prefix removed), child elements in order, and its own text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Element {
    pub name: String,
    pub children: Vec<Element>,
    /// Character data directly inside this element (text and CDATA), unescaped, untrimmed.
    pub text: String,
}

impl Element {
    /// The first child with this local name.
    pub(crate) fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The element reached by following child names from this one.
    pub(crate) fn path(&self, names: &[&str]) -> Option<&Element> {
        names
            .iter()
            .try_fold(self, |element, name| element.child(name))
    }

    /// The trimmed text of the element at `names`, if present and not empty.
    pub(crate) fn text_at(&self, names: &[&str]) -> Option<&str> {
        self.path(names)
            .map(|e| e.text.trim())
            .filter(|t| !t.is_empty())
    }

    /// The first element, depth first, that satisfies `predicate` (this one included).
    pub(crate) fn find(&self, predicate: &dyn Fn(&Element) -> bool) -> Option<&Element> {
        if predicate(self) {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(predicate))
    }
}

/// Parses a whole document and returns its root element.
pub(crate) fn parse(input: &str) -> Result<Element, String> {
    let mut reader = Reader { rest: input };
    reader.skip_misc()?;
    if !reader.rest.starts_with('<') {
        return Err("no root element".to_string());
    }
    let root = reader.element(0)?;
    reader.skip_misc()?;
    if !reader.rest.is_empty() {
        return Err("content after the root element".to_string());
    }
    Ok(root)
}

struct Reader<'a> {
    rest: &'a str,
}

impl<'a> Reader<'a> {
    /// Skips whitespace, comments and processing instructions outside the root element.
    fn skip_misc(&mut self) -> Result<(), String> {
        loop {
            self.rest = self.rest.trim_start();
            if self.rest.starts_with("<?") {
                self.skip_past("?>", "processing instruction")?;
            } else if self.rest.starts_with("<!--") {
                self.skip_past("-->", "comment")?;
            } else if self.rest.starts_with("<!") {
                return Err("document type declarations are not supported".to_string());
            } else {
                return Ok(());
            }
        }
    }

    fn skip_past(&mut self, end: &str, what: &str) -> Result<&'a str, String> {
        let at = self
            .rest
            .find(end)
            .ok_or_else(|| format!("unterminated {what}"))?;
        let skipped = &self.rest[..at];
        self.rest = &self.rest[at + end.len()..];
        Ok(skipped)
    }

    /// Reads one element, starting at its `<`.
    fn element(&mut self, depth: usize) -> Result<Element, String> {
        if depth >= MAX_DEPTH {
            return Err(format!("elements nest deeper than {MAX_DEPTH} levels"));
        }
        self.rest = &self.rest[1..];
        let raw_name = self.name()?;
        let mut element = Element {
            name: local_name(raw_name).to_string(),
            ..Element::default()
        };
        if self.attributes(raw_name)? {
            return Ok(element);
        }
        loop {
            if self.rest.is_empty() {
                return Err(format!("unexpected end of document inside <{raw_name}>"));
            }
            if let Some(after) = self.rest.strip_prefix("</") {
                self.rest = after;
                let closing = self.name()?;
                self.rest = self.rest.trim_start();
                if closing != raw_name || !self.rest.starts_with('>') {
                    return Err(format!("<{raw_name}> is closed by </{closing}>"));
                }
                self.rest = &self.rest[1..];
                return Ok(element);
            }
            if self.rest.starts_with("<!--") {
                self.skip_past("-->", "comment")?;
            } else if let Some(after) = self.rest.strip_prefix("<![CDATA[") {
                self.rest = after;
                let data = self.skip_past("]]>", "CDATA section")?;
                element.text.push_str(data);
            } else if self.rest.starts_with("<?") {
                self.skip_past("?>", "processing instruction")?;
            } else if self.rest.starts_with("<!") {
                return Err(format!("unsupported markup inside <{raw_name}>"));
            } else if self.rest.starts_with('<') {
                element.children.push(self.element(depth + 1)?);
            } else {
                let end = self.rest.find('<').unwrap_or(self.rest.len());
                element.text.push_str(&unescape(&self.rest[..end])?);
                self.rest = &self.rest[end..];
            }
        }
    }

    /// A tag or attribute name: everything up to whitespace, `/`, `>` or `=`.
    fn name(&mut self) -> Result<&'a str, String> {
        let end = self
            .rest
            .find(|c: char| c.is_whitespace() || matches!(c, '/' | '>' | '=' | '<'))
            .unwrap_or(self.rest.len());
        let name = &self.rest[..end];
        if name.is_empty() {
            return Err("missing element name".to_string());
        }
        self.rest = &self.rest[end..];
        Ok(name)
    }

    /// Skips the attributes of a start tag and its `>`; returns true for an empty-element tag (`/>`).
    fn attributes(&mut self, tag: &str) -> Result<bool, String> {
        loop {
            self.rest = self.rest.trim_start();
            if let Some(after) = self.rest.strip_prefix("/>") {
                self.rest = after;
                return Ok(true);
            }
            if let Some(after) = self.rest.strip_prefix('>') {
                self.rest = after;
                return Ok(false);
            }
            if self.rest.is_empty() {
                return Err(format!("unterminated start tag <{tag}>"));
            }
            self.name()?;
            self.rest = self.rest.trim_start();
            self.rest = self
                .rest
                .strip_prefix('=')
                .ok_or_else(|| format!("attribute without a value in <{tag}>"))?
                .trim_start();
            let quote = self
                .rest
                .chars()
                .next()
                .filter(|c| matches!(c, '"' | '\''))
                .ok_or_else(|| format!("unquoted attribute value in <{tag}>"))?;
            self.rest = &self.rest[1..];
            let end = self
                .rest
                .find(quote)
                .ok_or_else(|| format!("unterminated attribute value in <{tag}>"))?;
            self.rest = &self.rest[end + 1..];
        }
    }
}

fn local_name(name: &str) -> &str {
    name.rsplit_once(':').map_or(name, |(_, local)| local)
}

/// Replaces entity and character references in character data.
fn unescape(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let semi = after
            .find(';')
            .filter(|&i| i <= 10)
            .ok_or_else(|| "unterminated entity reference".to_string())?;
        out.push(entity(&after[..semi])?);
        rest = &after[semi + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn entity(name: &str) -> Result<char, String> {
    let code = match name {
        "lt" => return Ok('<'),
        "gt" => return Ok('>'),
        "amp" => return Ok('&'),
        "quot" => return Ok('"'),
        "apos" => return Ok('\''),
        _ => {
            if let Some(hex) = name.strip_prefix("#x").or_else(|| name.strip_prefix("#X")) {
                u32::from_str_radix(hex, 16).ok()
            } else if let Some(decimal) = name.strip_prefix('#') {
                decimal.parse::<u32>().ok()
            } else {
                None
            }
        }
    };
    code.and_then(char::from_u32)
        .ok_or_else(|| format!("unknown entity &{name};"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of a real STS AssumeRoleWithWebIdentity answer (values from AWS's documentation).
    const STS_SUCCESS: &str = r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:default:puller</SubjectFromWebIdentityToken>
    <Audience>sts.amazonaws.com</Audience>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/pull/default.puller</Arn>
      <AssumedRoleId>AROACLKWSDQRAOEXAMPLE:default.puller</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>AQoDYXdzEE0a8ANXXXXXXXXNO1ewxE5TijQyp+IEXAMPLE</SessionToken>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>
      <Expiration>2014-10-24T23:00:23Z</Expiration>
      <AccessKeyId>ASgeIAIOSFODNN7EXAMPLE</AccessKeyId>
    </Credentials>
    <SourceIdentity>SourceIdentityValue</SourceIdentity>
    <Provider>arn:aws:iam::123456789012:oidc-provider/oidc.example.com</Provider>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata>
    <RequestId>ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE</RequestId>
  </ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"#;

    const CREDENTIALS: [&str; 3] = [
        "AssumeRoleWithWebIdentityResult",
        "Credentials",
        "SecretAccessKey",
    ];

    #[test]
    fn reads_the_sts_success_shape() {
        let root = parse(STS_SUCCESS).unwrap();
        assert_eq!(root.name, "AssumeRoleWithWebIdentityResponse");
        assert_eq!(
            root.text_at(&CREDENTIALS),
            Some("wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY")
        );
        assert_eq!(
            root.text_at(&[
                "AssumeRoleWithWebIdentityResult",
                "Credentials",
                "Expiration"
            ]),
            Some("2014-10-24T23:00:23Z")
        );
        assert_eq!(
            root.text_at(&["ResponseMetadata", "RequestId"]),
            Some("ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE")
        );
    }

    #[test]
    fn escaped_markup_in_text_is_text() {
        let doc = "<ErrorResponse><Error><Code>InvalidIdentityToken</Code>\
            <Message>bad &lt;SecretAccessKey&gt;fake&lt;/SecretAccessKey&gt; &amp; more &#65;&#x42;</Message>\
            </Error></ErrorResponse>";
        let root = parse(doc).unwrap();
        let error = root.child("Error").unwrap();
        assert_eq!(error.children.len(), 2);
        assert_eq!(
            error.text_at(&["Message"]),
            Some("bad <SecretAccessKey>fake</SecretAccessKey> & more AB")
        );
        assert!(root.find(&|e| e.name == "SecretAccessKey").is_none());
    }

    #[test]
    fn cdata_comments_attributes_and_namespaces() {
        let doc = r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- leading comment -->
<sts:Response xmlns:sts="urn:x" a='1' b = "x>y">
  <!-- <Credentials><SecretAccessKey>in-comment</SecretAccessKey></Credentials> -->
  <sts:Value kind="cdata"><![CDATA[<not-an-element> & not an entity]]></sts:Value>
  <Empty/>
  <Empty2 attr="v" />
  <?ignored processing instruction?>
</sts:Response>
<!-- trailing comment -->
"#;
        let root = parse(doc).unwrap();
        assert_eq!(root.name, "Response");
        let names: Vec<&str> = root.children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Value", "Empty", "Empty2"]);
        assert_eq!(
            root.text_at(&["Value"]),
            Some("<not-an-element> & not an entity")
        );
        assert_eq!(root.text_at(&["Empty"]), None);
        assert!(root.find(&|e| e.name == "SecretAccessKey").is_none());
    }

    #[test]
    fn malformed_documents_are_errors() {
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        let cases = [
            ("", "no root element"),
            ("not xml", "no root element"),
            ("<a><b></a></b>", "<b> is closed by </a>"),
            ("<a>", "unexpected end of document inside <a>"),
            ("<a>&unknown;</a>", "unknown entity &unknown;"),
            ("<a>& b</a>", "unterminated entity reference"),
            ("<a>&#xD800;</a>", "unknown entity"),
            (
                "<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>",
                "document type declarations are not supported",
            ),
            ("<a><!-- x</a>", "unterminated comment"),
            ("<a><![CDATA[x</a>", "unterminated CDATA section"),
            ("<a b=c></a>", "unquoted attribute value in <a>"),
            ("<a b></a>", "attribute without a value in <a>"),
            ("<a b=\"x></a>", "unterminated attribute value"),
            ("<a></a><b></b>", "content after the root element"),
            ("<>", "missing element name"),
            (&deep, "nest deeper than 32 levels"),
        ];
        for (doc, expected) in cases {
            let error = parse(doc).expect_err(doc);
            assert!(error.contains(expected), "{doc}: {error}");
        }
    }
}
