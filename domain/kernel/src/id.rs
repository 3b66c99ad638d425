//! Typed aggregate ids.

use std::{fmt, hash::Hash, marker::PhantomData, str::FromStr};

use uuid::Uuid;

use crate::error::FieldViolation;

/// The id of an aggregate of type `T`: a UUIDv7, so that ids sort by creation time
/// and index well. The type parameter keeps a product id from being passed where a
/// stock item id is expected.
pub struct Id<T: ?Sized> {
    uuid: Uuid,
    kind: PhantomData<fn() -> T>,
}

impl<T: ?Sized> Id<T> {
    /// A new id, time-ordered (UUIDv7).
    #[must_use]
    pub fn generate() -> Self {
        Self::from_uuid(Uuid::now_v7())
    }

    /// Wraps a UUID read back from a store.
    #[must_use]
    pub const fn from_uuid(uuid: Uuid) -> Self {
        Self {
            uuid,
            kind: PhantomData,
        }
    }

    /// The UUID inside.
    #[must_use]
    pub const fn as_uuid(&self) -> Uuid {
        self.uuid
    }

    /// Parses a client-supplied id, naming `field` in the violation when it is
    /// missing or not a UUID.
    ///
    /// # Errors
    /// A [`FieldViolation`] on `field` when `raw` is empty or not a UUID.
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldViolation> {
        if raw.is_empty() {
            return Err(FieldViolation::new(field, "is required"));
        }
        Uuid::from_str(raw)
            .map(Self::from_uuid)
            .map_err(|_| FieldViolation::new(field, "must be a UUID"))
    }
}

// Manual impls: derives would demand the same traits of `T`.
impl<T: ?Sized> Clone for Id<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: ?Sized> Copy for Id<T> {}
impl<T: ?Sized> PartialEq for Id<T> {
    fn eq(&self, other: &Self) -> bool {
        self.uuid == other.uuid
    }
}
impl<T: ?Sized> Eq for Id<T> {}
impl<T: ?Sized> PartialOrd for Id<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T: ?Sized> Ord for Id<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.uuid.cmp(&other.uuid)
    }
}
impl<T: ?Sized> Hash for Id<T> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.uuid.hash(state);
    }
}
impl<T: ?Sized> fmt::Debug for Id<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.uuid, f)
    }
}
impl<T: ?Sized> fmt::Display for Id<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.uuid, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Widget;

    #[test]
    fn generated_ids_sort_by_creation() {
        let a = Id::<Widget>::generate();
        let b = Id::<Widget>::generate();
        assert!(a < b);
        assert_eq!(a.as_uuid().get_version_num(), 7);
    }

    #[test]
    fn ids_hash_by_their_uuid() {
        let a = Id::<Widget>::generate();
        let b = Id::<Widget>::generate();
        let set: std::collections::HashSet<_> = [a, a, b].into_iter().collect();
        assert_eq!(set.len(), 2);
        assert!(set.contains(&Id::from_uuid(a.as_uuid())));
    }

    #[test]
    fn parse_names_the_field() {
        let err = Id::<Widget>::parse("id", "nope").unwrap_err();
        assert_eq!(err.field(), "id");
        assert_eq!(
            Id::<Widget>::parse("id", "").unwrap_err().description(),
            "is required"
        );
        let id = Id::<Widget>::generate();
        assert_eq!(Id::<Widget>::parse("id", &id.to_string()).ok(), Some(id));
    }
}
