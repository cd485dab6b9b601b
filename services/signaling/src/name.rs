//! User names: what people type to be found, validated once at the edge of the domain.

use std::fmt;

/// The longest name accepted, in characters.
pub const MAX_NAME_LEN: usize = 64;

/// A registered user name: 1 to 64 letters, digits or `_ - . @ +`. No `:` (it separates the
/// expiry in TURN usernames), no spaces, no control characters.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Name(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("a name must not be empty")]
    Empty,
    #[error("a name must be at most {MAX_NAME_LEN} characters")]
    TooLong,
    #[error("a name may only contain letters, digits and _ - . @ +")]
    BadChar,
}

impl Name {
    pub fn parse(text: &str) -> Result<Self, NameError> {
        if text.is_empty() {
            return Err(NameError::Empty);
        }
        if text.chars().count() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        if !text
            .chars()
            .all(|c| c.is_alphanumeric() || "_-.@+".contains(c))
        {
            return Err(NameError::BadChar);
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["alice", "Bob_2", "a.b-c@d+e", "józsef", &"x".repeat(64)] {
            assert_eq!(Name::parse(ok).map(|n| n.0), Ok(ok.to_owned()));
        }
        assert_eq!(Name::parse(""), Err(NameError::Empty));
        assert_eq!(Name::parse(&"x".repeat(65)), Err(NameError::TooLong));
        for bad in ["a b", "a:b", "a\nb", "<script>", "a/b", "\u{202e}x"] {
            assert_eq!(Name::parse(bad), Err(NameError::BadChar), "{bad:?}");
        }
    }
}
