//! The part of JMESPath that the AWS CSI provider's `jmesPath` entries use in
//! practice: fields and list indexes, `username`, `db.password`,
//! `"my-key".value`, `hosts[0]`. The result must be a JSON string, as that
//! provider requires. Anything else JMESPath can say (filters, projections,
//! functions, pipes) is refused at admission, naming this rule, rather than
//! evaluated differently.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest path read; real ones are a few dozen bytes.
pub const MAX_JSON_PATH_BYTES: usize = 256;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Step {
    Field(String),
    Index(usize),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{reason}; accepted: JMESPath fields and indexes such as username, db.password, \"my-key\".value or hosts[0] (at most {MAX_JSON_PATH_BYTES} bytes)"
)]
pub struct JsonPathError {
    pub reason: String,
}

/// A parsed path; it serialises as the text it was read from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JsonPath {
    text: String,
    steps: Vec<Step>,
}

impl JsonPath {
    pub fn parse(text: &str) -> Result<Self, JsonPathError> {
        let fail = |reason: String| JsonPathError { reason };
        if text.is_empty() {
            return Err(fail("the path is empty".to_owned()));
        }
        if text.len() > MAX_JSON_PATH_BYTES {
            return Err(fail(format!("the path is {} bytes long", text.len())));
        }
        let mut steps = Vec::new();
        let mut rest = text.trim();
        // A field is expected at the start and after each '.'.
        let mut want_field = true;
        while !rest.is_empty() {
            if want_field {
                let (field, after) = field(rest).ok_or_else(|| {
                    fail(format!("expected a field name at {:?}", first_chars(rest)))
                })?;
                steps.push(Step::Field(field));
                rest = after;
                want_field = false;
            } else if let Some(after) = rest.strip_prefix('.') {
                rest = after;
                want_field = true;
            } else if let Some(after) = rest.strip_prefix('[') {
                let (digits, after) = after
                    .split_once(']')
                    .ok_or_else(|| fail("a '[' is not closed".to_owned()))?;
                let index = digits
                    .parse::<usize>()
                    .ok()
                    .filter(|_| digits.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| {
                        fail(format!(
                            "[{digits}] is not a list index (filters, slices, projections and negative indexes are not supported)"
                        ))
                    })?;
                steps.push(Step::Index(index));
                rest = after;
            } else {
                return Err(fail(format!(
                    "{:?} is not supported here (pipes, functions, filters and multiselects are not)",
                    first_chars(rest)
                )));
            }
        }
        if want_field {
            return Err(fail("the path ends with '.'".to_owned()));
        }
        Ok(Self {
            text: text.to_owned(),
            steps,
        })
    }

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// An unquoted identifier (`[A-Za-z_][A-Za-z0-9_]*`) or a quoted one with
/// JSON escapes, as JMESPath spells them.
fn field(text: &str) -> Option<(String, &str)> {
    if text.starts_with('"') {
        let bytes = text.as_bytes();
        let mut i = 1;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 2,
                b'"' => {
                    let quoted = &text[..=i];
                    let name: String = serde_json::from_str(quoted).ok()?;
                    return Some((name, &text[i + 1..]));
                }
                _ => i += 1,
            }
        }
        return None;
    }
    let end = text
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
        .map_or(text.len(), |(i, _)| i);
    let name = &text[..end];
    let first = name.chars().next()?;
    (first.is_ascii_alphabetic() || first == '_').then(|| (name.to_owned(), &text[end..]))
}

fn first_chars(text: &str) -> String {
    text.chars().take(16).collect()
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl TryFrom<String> for JsonPath {
    type Error = JsonPathError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<JsonPath> for String {
    fn from(value: JsonPath) -> Self {
        value.text
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn steps(text: &str) -> Vec<Step> {
        JsonPath::parse(text).map(|p| p.steps).unwrap_or_default()
    }

    #[test]
    fn fields_quoted_fields_and_indexes() {
        assert_eq!(steps("username"), [Step::Field("username".into())]);
        assert_eq!(
            steps("db.password"),
            [Step::Field("db".into()), Step::Field("password".into())]
        );
        assert_eq!(
            steps(r#""my-key".v"#),
            [Step::Field("my-key".into()), Step::Field("v".into())]
        );
        assert_eq!(steps(r#""a\"b""#), [Step::Field("a\"b".into())]);
        assert_eq!(
            steps("hosts[0].name"),
            [
                Step::Field("hosts".into()),
                Step::Index(0),
                Step::Field("name".into())
            ]
        );
        assert_eq!(
            steps("m[1][2]"),
            [Step::Field("m".into()), Step::Index(1), Step::Index(2)]
        );
    }

    #[rstest]
    #[case("", "empty")]
    #[case("a.", "ends with")]
    #[case(".a", "expected a field")]
    #[case("a[?b=='c']", "not a list index")]
    #[case("a[-1]", "not a list index")]
    #[case("a[*]", "not a list index")]
    #[case("a | b", "not supported")]
    #[case("length(a)", "not supported")]
    #[case("1abc", "expected a field")]
    #[case("a-b", "not supported")]
    #[case("\"open", "expected a field")]
    #[case("a[0", "not closed")]
    fn other_jmespath_is_refused_saying_why(#[case] text: &str, #[case] says: &str) {
        let e = JsonPath::parse(text).map(|_| ()).unwrap_err();
        assert!(e.to_string().contains(says), "{text}: {e}");
        assert!(e.to_string().contains("accepted:"), "{e}");
    }

    #[test]
    fn long_paths_are_refused() {
        let e = JsonPath::parse(&"a.".repeat(200)).map(|_| ()).unwrap_err();
        assert!(e.to_string().contains("bytes long"), "{e}");
    }

    #[test]
    fn serialises_as_its_text() {
        let p = JsonPath::parse("a.b[0]").map_err(|e| e.to_string());
        let json = serde_json::to_string(&p.clone().unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(json.as_deref().ok(), Some("\"a.b[0]\""));
        let back: Result<JsonPath, _> = serde_json::from_str("\"a.b[0]\"");
        assert_eq!(back.ok(), p.ok());
        assert!(serde_json::from_str::<JsonPath>("\"a|b\"").is_err());
    }
}
