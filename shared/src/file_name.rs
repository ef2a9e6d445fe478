//! Names of the files the sidecar writes. One rule set, checked by the webhook
//! at admission and again by the sidecar before it writes.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest name a Linux file system accepts for one path component.
pub const MAX_FILE_NAME_BYTES: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileNameError {
    #[error("file name is empty")]
    Empty,
    #[error("file name {0:?} contains '/'; a file name is one path component")]
    Slash(String),
    #[error("file name {0:?} starts with '..', which is reserved for the writer's own entries")]
    LeadingDots(String),
    #[error("file name {0:?} is '.' or '..'")]
    DotEntry(String),
    #[error("file name {name:?} is {len} bytes long; at most {MAX_FILE_NAME_BYTES} are accepted")]
    TooLong { name: String, len: usize },
    #[error("file name {0:?} contains a NUL or control character")]
    Control(String),
    #[error(
        "file name {0:?} contains an invisible formatting character (bidi override, zero-width, line separator), which makes names look like others"
    )]
    Format(String),
}

/// A validated file name: one path component, never `.`/`..`, never starting
/// with `..` (the atomic writer's `..data` and timestamped directories live
/// there), at most 255 bytes, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FileName(String);

impl FileName {
    pub fn new(name: impl Into<String>) -> Result<Self, FileNameError> {
        let name = name.into();
        if name.is_empty() {
            return Err(FileNameError::Empty);
        }
        if name == "." || name == ".." {
            return Err(FileNameError::DotEntry(name));
        }
        if name.contains('/') {
            return Err(FileNameError::Slash(name));
        }
        if name.starts_with("..") {
            return Err(FileNameError::LeadingDots(name));
        }
        if name.len() > MAX_FILE_NAME_BYTES {
            let len = name.len();
            return Err(FileNameError::TooLong { name, len });
        }
        if name.chars().any(char::is_control) {
            return Err(FileNameError::Control(name));
        }
        if name.chars().any(is_format) {
            return Err(FileNameError::Format(name));
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Unicode's format characters (general category Cf, as of Unicode 15) and
/// the line and paragraph separators: invisible, they make a name display as
/// another (`invoice\u{202e}fdp.exe`). std has no category table; this is it.
fn is_format(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x2028..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    )
}

impl TryFrom<String> for FileName {
    type Error = FileNameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<FileName> for String {
    fn from(value: FileName) -> Self {
        value.0
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case("db-pass")]
    #[case("tls.crt")]
    #[case(".hidden")]
    #[case("a..b")]
    #[case("名前")]
    fn accepts(#[case] name: &str) {
        assert_eq!(FileName::new(name).unwrap().as_str(), name);
    }

    #[rstest]
    #[case("", FileNameError::Empty)]
    #[case(".", FileNameError::DotEntry(".".into()))]
    #[case("..", FileNameError::DotEntry("..".into()))]
    #[case("..data", FileNameError::LeadingDots("..data".into()))]
    #[case("a/b", FileNameError::Slash("a/b".into()))]
    #[case("../etc/passwd", FileNameError::Slash("../etc/passwd".into()))]
    #[case("a\nb", FileNameError::Control("a\nb".into()))]
    // L9: bidi override and zero-width characters.
    #[case("invoice\u{202e}fdp.exe", FileNameError::Format("invoice\u{202e}fdp.exe".into()))]
    #[case("db\u{200b}-pass", FileNameError::Format("db\u{200b}-pass".into()))]
    #[case("a\u{2028}b", FileNameError::Format("a\u{2028}b".into()))]
    fn rejects(#[case] name: &str, #[case] expected: FileNameError) {
        assert_eq!(FileName::new(name), Err(expected));
    }

    #[test]
    fn length_is_counted_in_bytes() {
        assert!(FileName::new("a".repeat(255)).is_ok());
        // 128 two-byte characters: 256 bytes, over the limit though only 128 chars.
        let long = "é".repeat(128);
        assert_eq!(
            FileName::new(long.clone()),
            Err(FileNameError::TooLong {
                name: long,
                len: 256
            })
        );
    }

    #[test]
    fn deserialising_validates() {
        assert!(serde_json::from_str::<FileName>("\"..data\"").is_err());
        assert!(serde_json::from_str::<FileName>("\"ok\"").is_ok());
    }
}
