//! Value objects: validated on construction, immutable after.

use std::fmt;

use serde::{Deserialize, Serialize};
use strata_kernel::{FieldViolation, TextRule};

/// An email address, the account's sign-in name: trimmed, NFKC-normalized and
/// lower-cased, so that uniqueness and look-ups ignore case and Unicode
/// spelling (a composed and a decomposed `é`, a full-width `ａ`, are one
/// address). Invisible characters (zero-width spaces and joiners, bidi
/// controls, soft hyphens …) are refused: they would make a look-alike of
/// another account. One `@`, a non-empty local part and a domain with a dot
/// (not at either end), at most 254 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// The input rule (RFC 5321 bounds a path to 254 characters).
    pub const RULE: TextRule = TextRule::single_line("email", 1, 254);

    /// # Errors
    /// A violation on `email` when blank, too long, holding control characters
    /// or not shaped like an address.
    pub fn parse(raw: &str) -> Result<Self, FieldViolation> {
        use unicode_normalization::UnicodeNormalization as _;
        let shaped = |reason: &str| FieldViolation::new("email", reason.to_owned());
        let checked = Self::RULE.parse(raw)?;
        if let Some((at, c)) = checked.chars().enumerate().find(|(_, c)| is_invisible(*c)) {
            return Err(shaped(&format!(
                "must not contain invisible characters (U+{:04X} at {})",
                u32::from(c),
                at + 1
            )));
        }
        let email: String = checked.nfkc().collect::<String>().to_lowercase();
        let Some((local, domain)) = email.split_once('@') else {
            return Err(shaped("must contain an '@'"));
        };
        if domain.contains('@') {
            return Err(shaped("must contain exactly one '@'"));
        }
        if local.is_empty() {
            return Err(shaped("must have a local part before the '@'"));
        }
        if !domain.contains('.') || domain.starts_with('.') || domain.ends_with('.') {
            return Err(shaped("must have a domain with a dot after the '@'"));
        }
        if email.chars().any(char::is_whitespace) {
            return Err(shaped("must not contain spaces"));
        }
        // Lower-casing can lengthen a few characters (e.g. 'İ'): check again.
        if email.chars().count() > 254 {
            return Err(shaped("must be at most 254 characters"));
        }
        Ok(Self(email))
    }

    /// A stored email, checked only against the invariant (not blank), not
    /// today's input rules.
    ///
    /// # Errors
    /// A violation on `email` when blank.
    pub fn from_stored(stored: String) -> Result<Self, FieldViolation> {
        if stored.trim().is_empty() {
            return Err(FieldViolation::new("email", "is blank"));
        }
        Ok(Self(stored))
    }

    /// The normalized address.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Characters that show as nothing (Unicode's format characters, Cf, and the
/// invisible fillers): within an email they only serve to make a look-alike.
fn is_invisible(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F
            | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F
            | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFFB | 0x1D173..=0x1D17A | 0xE0000..=0xE0FFF
    ) || (0x0600..=0x0605).contains(&u32::from(c))
}

/// The name an account is shown by: 1 to 100 characters on one line, surrounding
/// spaces trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    /// The input rule.
    pub const RULE: TextRule = TextRule::single_line("display_name", 1, 100);

    /// # Errors
    /// A violation on `display_name` when blank, too long or holding control
    /// characters.
    pub fn parse(raw: &str) -> Result<Self, FieldViolation> {
        Self::RULE.parse(raw).map(Self)
    }

    /// A stored name, checked only against the invariant (not blank).
    ///
    /// # Errors
    /// A violation on `display_name` when blank.
    pub fn from_stored(stored: String) -> Result<Self, FieldViolation> {
        if stored.trim().is_empty() {
            return Err(FieldViolation::new("display_name", "is blank"));
        }
        Ok(Self(stored))
    }

    /// The name as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why an account was suspended: 1 to 500 characters on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuspensionReason(String);

impl SuspensionReason {
    /// The input rule.
    pub const RULE: TextRule = TextRule::single_line("reason", 1, 500);

    /// # Errors
    /// A violation on `reason` when blank, too long or holding control characters.
    pub fn parse(raw: &str) -> Result<Self, FieldViolation> {
        Self::RULE.parse(raw).map(Self)
    }

    /// A stored reason: any text is a reason.
    #[must_use]
    pub fn from_stored(stored: String) -> Self {
        Self(stored)
    }

    /// The reason as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What an account may do: a closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A shopper.
    Customer,
    /// Shop staff.
    Staff,
    /// Manages staff and settings.
    Admin,
}

impl Role {
    /// Every role, in their canonical order.
    pub const ALL: [Self; 3] = [Self::Customer, Self::Staff, Self::Admin];

    /// The stored name: `customer`, `staff` or `admin`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Staff => "staff",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The roles of an account: at least one, each once, in canonical order (so two
/// requests naming the same roles in another order are the same command).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Roles(Vec<Role>);

impl Roles {
    /// # Errors
    /// A violation on `roles` when none is given.
    pub fn new(roles: impl IntoIterator<Item = Role>) -> Result<Self, FieldViolation> {
        let mut roles: Vec<Role> = roles.into_iter().collect();
        roles.sort_unstable();
        roles.dedup();
        if roles.is_empty() {
            return Err(FieldViolation::new("roles", "must name at least one role"));
        }
        Ok(Self(roles))
    }

    /// The roles, in canonical order.
    #[must_use]
    pub fn as_slice(&self) -> &[Role] {
        &self.0
    }
}

/// The longest password accepted, in characters: hashing cost grows with the
/// input, so it is bounded.
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// A password as the client sent it. It never leaves the context: its `Debug`
/// prints `***`, it is neither `Display` nor `Serialize`, and the checks below
/// never quote it (unlike [`TextRule`], which names the offending character and
/// its position — part of the password).
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Password {
    /// A new password: `min_chars` to [`MAX_PASSWORD_CHARS`] characters, no
    /// control characters. Kept exactly as given (no trimming: every character
    /// counts).
    ///
    /// # Errors
    /// A violation on `field` when missing, too short, too long or holding a
    /// control character; the description never quotes the password.
    pub fn new_password(field: &'static str, raw: &str, min_chars: usize) -> Result<Self, FieldViolation> {
        let chars = raw.chars().count();
        if chars == 0 {
            return Err(FieldViolation::new(field, "is required"));
        }
        if chars < min_chars {
            return Err(FieldViolation::new(
                field,
                format!("must be at least {min_chars} characters"),
            ));
        }
        Self::bounded(field, chars)?;
        if raw.chars().any(char::is_control) {
            return Err(FieldViolation::new(field, "must not contain control characters"));
        }
        Ok(Self(raw.to_owned()))
    }

    /// A password given to be checked against a stored hash: only required and
    /// bounded, not held to today's rules for new passwords (a password set when
    /// the minimum was lower still signs in).
    ///
    /// # Errors
    /// A violation on `field` when missing or longer than [`MAX_PASSWORD_CHARS`].
    pub fn given(field: &'static str, raw: &str) -> Result<Self, FieldViolation> {
        let chars = raw.chars().count();
        if chars == 0 {
            return Err(FieldViolation::new(field, "is required"));
        }
        Self::bounded(field, chars)?;
        Ok(Self(raw.to_owned()))
    }

    fn bounded(field: &'static str, chars: usize) -> Result<(), FieldViolation> {
        if chars > MAX_PASSWORD_CHARS {
            return Err(FieldViolation::new(
                field,
                format!("must be at most {MAX_PASSWORD_CHARS} characters"),
            ));
        }
        Ok(())
    }

    /// The password itself, for the hasher only.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A password hash: an argon2id PHC string (algorithm, parameters, salt, hash),
/// or — for an account replayed from an idempotency record, which keeps no hash
/// — withheld, which verifies no password. Its `Debug` prints `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(Option<String>);

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl PasswordHash {
    /// A hash the hasher made.
    ///
    /// # Errors
    /// A violation on `password_hash` when it is not a PHC string (`$…`).
    pub fn from_phc(phc: String) -> Result<Self, FieldViolation> {
        if !phc.starts_with('$') {
            return Err(FieldViolation::new("password_hash", "is not a PHC string"));
        }
        Ok(Self(Some(phc)))
    }

    /// The hash of an account read back from an idempotency record, which does
    /// not keep it: it verifies no password.
    #[must_use]
    pub const fn withheld() -> Self {
        Self(None)
    }

    /// The PHC string, `None` when withheld.
    #[must_use]
    pub fn phc(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn roles_are_named_as_they_are_stored() {
        for (role, name) in Role::ALL.into_iter().zip(["customer", "staff", "admin"]) {
            assert_eq!(role.as_str(), name);
            assert_eq!(role.to_string(), name);
            assert_eq!(
                serde_json::to_value(role).unwrap(),
                name,
                "the stored name is the same"
            );
        }
    }

    #[test]
    fn a_password_of_exactly_the_minimum_length_is_accepted() {
        assert!(Password::new_password("password", &"x".repeat(12), 12).is_ok());
        let short = Password::new_password("password", &"x".repeat(11), 12).unwrap_err();
        assert_eq!(short.field(), "password");
        // Characters, not bytes: twelve two-byte characters are enough.
        assert!(Password::new_password("password", &"é".repeat(12), 12).is_ok());
    }

    #[test]
    fn emails_are_normalized_and_shaped() {
        assert_eq!(
            Email::parse("  Ada.Lovelace@Example.COM ").unwrap().as_str(),
            "ada.lovelace@example.com"
        );
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@example",
            "ada@@example.com",
            "a@b@c.com",
            "ada@.com",
            "ada@example.",
            "a da@example.com",
            "ada@exa\u{0}mple.com",
        ] {
            assert_eq!(Email::parse(bad).unwrap_err().field(), "email", "{bad:?}");
        }
        let local = "a".repeat(254 - "@example.com".len());
        assert!(Email::parse(&format!("{local}@example.com")).is_ok());
        assert!(Email::parse(&format!("{local}a@example.com")).is_err());
    }

    #[test]
    fn emails_are_one_address_however_unicode_spells_them_and_invisible_characters_are_refused() {
        // Composed and decomposed é, a capital, a full-width letter, a ligature: NFKC.
        let composed = Email::parse("jos\u{e9}@example.com").unwrap();
        assert_eq!(Email::parse("jose\u{301}@example.com").unwrap(), composed);
        assert_eq!(Email::parse("JOS\u{c9}@example.com").unwrap(), composed);
        assert_eq!(
            Email::parse("\u{ff41}da@example.com").unwrap().as_str(),
            "ada@example.com"
        );
        assert_eq!(
            Email::parse("\u{fb01}n@example.com").unwrap().as_str(),
            "fin@example.com"
        );
        for invisible in [
            '\u{200b}', '\u{200c}', '\u{200d}', '\u{2060}', '\u{feff}', '\u{ad}', '\u{202e}', '\u{3164}',
        ] {
            let look_alike = format!("ad{invisible}a@example.com");
            let refused = Email::parse(&look_alike).unwrap_err();
            assert_eq!(refused.field(), "email", "{look_alike:?}");
            assert!(
                refused.description().contains("invisible"),
                "{look_alike:?}: {refused:?}"
            );
        }
    }

    #[test]
    fn roles_are_a_set_of_at_least_one() {
        let roles = Roles::new([Role::Admin, Role::Customer, Role::Admin]).unwrap();
        assert_eq!(roles.as_slice(), [Role::Customer, Role::Admin]);
        assert_eq!(Roles::new([]).unwrap_err().field(), "roles");
    }

    #[test]
    fn passwords_are_bounded_and_never_printed() {
        let password = Password::new_password("password", "correct horse battery", 12).unwrap();
        assert_eq!(format!("{password:?}"), "***");
        assert_eq!(
            Password::new_password("password", "short", 12)
                .unwrap_err()
                .description(),
            "must be at least 12 characters"
        );
        assert!(Password::new_password("password", &"x".repeat(1024), 12).is_ok());
        assert!(Password::new_password("password", &"x".repeat(1025), 12).is_err());
        let control = Password::new_password("password", "secret\u{0}secret-secret", 12).unwrap_err();
        assert!(!control.to_string().contains("secret"), "{control}");
        assert!(
            !control.description().contains("U+"),
            "no hint about the password"
        );
        assert!(
            Password::given("password", "short").is_ok(),
            "old passwords still verify"
        );
        assert!(Password::given("password", "").is_err());
        assert_eq!(
            format!("{:?}", PasswordHash::from_phc("$argon2id$x".into()).unwrap()),
            "***"
        );
    }
}
