//! The rule every free-text field of every context shares: no control
//! characters (PostgreSQL's `text` and `jsonb` refuse U+0000, and none of them
//! belongs in a name), a length in characters, and surrounding spaces trimmed
//! from single-line values.

use crate::FieldViolation;

/// How a text field is checked; see [`TextRule::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextRule {
    field: &'static str,
    min_chars: usize,
    max_chars: usize,
    multi_line: bool,
}

impl TextRule {
    /// A one-line value (a name, an email): surrounding whitespace is trimmed and
    /// no control character is allowed.
    #[must_use]
    pub const fn single_line(field: &'static str, min_chars: usize, max_chars: usize) -> Self {
        Self {
            field,
            min_chars,
            max_chars,
            multi_line: false,
        }
    }

    /// A free-form value (a description): kept as given; line feeds, carriage
    /// returns and tabs are allowed, other control characters are not.
    #[must_use]
    pub const fn multi_line(field: &'static str, min_chars: usize, max_chars: usize) -> Self {
        Self {
            field,
            min_chars,
            max_chars,
            multi_line: true,
        }
    }

    /// The field's name as the client spells it.
    #[must_use]
    pub const fn field(&self) -> &'static str {
        self.field
    }

    /// The value to keep: trimmed when single-line, checked for control
    /// characters and for its length in characters.
    ///
    /// # Errors
    /// A [`FieldViolation`] on the field: required and blank, too long, too
    /// short, or holding a control character (named by its code point).
    pub fn parse(&self, raw: &str) -> Result<String, FieldViolation> {
        let value = if self.multi_line { raw } else { raw.trim() };
        if let Some((at, c)) = value
            .chars()
            .enumerate()
            .find(|&(_, c)| c.is_control() && !(self.multi_line && matches!(c, '\n' | '\r' | '\t')))
        {
            return Err(FieldViolation::new(
                self.field,
                format!(
                    "must not contain control characters (U+{:04X} at character {})",
                    u32::from(c),
                    at + 1
                ),
            ));
        }
        let chars = value.chars().count();
        if chars == 0 && self.min_chars > 0 {
            return Err(FieldViolation::new(self.field, "is required"));
        }
        if chars < self.min_chars {
            return Err(FieldViolation::new(
                self.field,
                format!("must be at least {} characters", self.min_chars),
            ));
        }
        if chars > self.max_chars {
            return Err(FieldViolation::new(
                self.field,
                format!("must be at most {} characters", self.max_chars),
            ));
        }
        Ok(value.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: TextRule = TextRule::single_line("name", 1, 5);
    const NOTE: TextRule = TextRule::multi_line("note", 0, 20);

    #[test]
    fn a_rule_names_its_field() {
        assert_eq!(NAME.field(), "name");
        assert_eq!(NOTE.field(), "note");
    }

    #[test]
    fn single_line_values_are_trimmed_and_bounded() {
        assert_eq!(NAME.parse("  Mug "), Ok("Mug".to_owned()));
        assert_eq!(NAME.parse("   ").unwrap_err().description(), "is required");
        assert_eq!(
            NAME.parse("ééééé"),
            Ok("ééééé".to_owned()),
            "characters, not bytes"
        );
        assert_eq!(
            NAME.parse("éééééé").unwrap_err().description(),
            "must be at most 5 characters"
        );
    }

    #[test]
    fn control_characters_are_refused_and_named() {
        let err = NAME.parse("a\u{0}b").unwrap_err();
        assert_eq!(err.field(), "name");
        assert_eq!(
            err.description(),
            "must not contain control characters (U+0000 at character 2)"
        );
        assert!(NAME.parse("a\nb").is_err(), "one line means one line");
        assert!(NAME.parse("a\u{9f}").is_err(), "C1 controls too");
        assert!(NOTE.parse("line\r\nnext\tcol").is_ok());
        assert!(NOTE.parse("nul\u{0}").is_err());
        assert!(NOTE.parse("esc\u{1b}[31m").is_err());
    }

    #[test]
    fn multi_line_values_are_kept_as_given() {
        assert_eq!(NOTE.parse(" padded "), Ok(" padded ".to_owned()));
        assert_eq!(NOTE.parse(""), Ok(String::new()));
    }
}
