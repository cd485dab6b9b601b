//! User names: what people type to be found, validated once at each edge (the gateway before it
//! records or fetches anything for a name, signaling before it stores one).
//!
//! A name is normalised to NFC, so the same letters typed two ways are one name. Beyond letters
//! and digits, only what cannot be mistaken is accepted, following the Unicode security
//! mechanisms (UTS #39): every character must be allowed in identifiers by its General Security
//! Profile (which leaves out invisible fillers, compatibility forms such as fullwidth letters,
//! and obsolete or exotic characters); a name must be written in one script (Han with Japanese
//! kana or Korean Hangul counts as one, and Latin may join them); and a name in another script
//! that reads as a Latin one ("раураl" in Cyrillic) is refused as a look-alike.

use std::fmt;

use unicode_normalization::UnicodeNormalization;
use unicode_security::{
    GeneralSecurityProfile, RestrictionLevel, RestrictionLevelDetection, skeleton,
};

/// The longest name accepted, in characters.
pub const MAX_NAME_LEN: usize = 64;

/// A registered user name: 1 to 64 letters, digits or `_ - . @ +`, in NFC, as described above.
/// No `:` (it separates the expiry in TURN usernames), no spaces, no control characters.
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
    #[error("a name may not contain invisible, compatibility or unusual characters")]
    NotAllowed,
    #[error("a name must be written in one script, and not imitate another")]
    Confusable,
}

impl Name {
    pub fn parse(text: &str) -> Result<Self, NameError> {
        if text.is_empty() {
            return Err(NameError::Empty);
        }
        // Checked before normalising: normalisation of a huge text is work for nothing.
        if text.chars().count() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        let allowed = |c: char| c.is_alphanumeric() || "_-.@+".contains(c);
        if text.is_ascii() {
            return match text.chars().all(allowed) {
                true => Ok(Self(text.to_owned())),
                false => Err(NameError::BadChar),
            };
        }
        let name: String = text.nfc().collect();
        if !name.chars().all(allowed) {
            return Err(NameError::BadChar);
        }
        if !name.chars().all(|c| c.identifier_allowed()) {
            return Err(NameError::NotAllowed);
        }
        if name.detect_restriction_level() > RestrictionLevel::HighlyRestrictive
            || skeleton(&name).all(|c| c.is_ascii())
        {
            return Err(NameError::Confusable);
        }
        Ok(Self(name))
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
        for ok in [
            "alice",
            "Bob_2",
            "a.b-c@d+e",
            "józsef",
            "Ελένη",
            "Дмитрий",
            "山田太郎",
            "やまだ",
            "김민준",
            &"x".repeat(64),
        ] {
            assert_eq!(Name::parse(ok).map(|n| n.0), Ok(ok.to_owned()), "{ok}");
        }
        assert_eq!(Name::parse(""), Err(NameError::Empty));
        assert_eq!(Name::parse(&"x".repeat(65)), Err(NameError::TooLong));
        for bad in [
            "a b",
            "a:b",
            "a\nb",
            "<script>",
            "a/b",
            "\u{202e}x",
            "a\u{200b}b",
        ] {
            assert_eq!(Name::parse(bad), Err(NameError::BadChar), "{bad:?}");
        }
    }

    #[test]
    fn one_spelling_per_name() {
        // "é" typed as e + combining acute is the same name as the precomposed one.
        assert_eq!(
            Name::parse("jo\u{301}zsef").map(|n| n.0),
            Ok("józsef".to_owned())
        );
    }

    #[test]
    fn invisible_compatibility_and_look_alike_names_are_refused() {
        for bad in [
            "\u{3164}",         // Hangul filler: invisible
            "bob\u{3164}",      // … after a real name
            "\u{115f}\u{1160}", // Hangul choseong and jungseong fillers
            "ａｌｉｃｅ",       // fullwidth forms
        ] {
            assert_eq!(Name::parse(bad), Err(NameError::NotAllowed), "{bad:?}");
        }
        for bad in [
            "аlice", // Cyrillic а among Latin letters
            "bοb",   // Greek ο among Latin letters
            "раура", // all Cyrillic, reads as Latin "paypa"
            "ΑΒΕ",   // all Greek capitals, read as Latin "ABE"
        ] {
            assert_eq!(Name::parse(bad), Err(NameError::Confusable), "{bad:?}");
        }
    }
}
