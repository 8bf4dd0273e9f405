//! Identifier newtypes. Each can only hold a valid value, so nothing downstream re-checks.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error(
        "invalid ticket key {0:?}: expected 1-10 capital letters or digits, starting with a letter"
    )]
    Key(String),
    #[error("invalid ticket id {0:?}: expected KEY-N such as MC-12")]
    Ticket(String),
    #[error(
        "invalid name {0:?}: expected 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
    )]
    Name(String),
}

/// The prefix of ticket ids, e.g. `MC`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TicketKey(String);

impl TicketKey {
    pub fn parse(text: &str) -> Result<Self, IdError> {
        let ok = (1..=10).contains(&text.len())
            && text.starts_with(|c: char| c.is_ascii_uppercase())
            && text
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        if ok {
            Ok(TicketKey(text.to_owned()))
        } else {
            Err(IdError::Key(text.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for TicketKey {
    fn default() -> Self {
        TicketKey("MC".to_owned())
    }
}

impl fmt::Display for TicketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A ticket id, `KEY-N`. Numbers are allocated by the store, unique across the instance.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TicketId {
    // Field order gives a natural sort within one key.
    key: String,
    number: i64,
}

impl TicketId {
    pub fn new(key: &TicketKey, number: i64) -> Self {
        assert!(number > 0, "ticket numbers start at 1");
        TicketId {
            key: key.0.clone(),
            number,
        }
    }

    /// Parses `KEY-N` (case-insensitive), or a bare `N`, which takes `default_key`.
    pub fn parse_with_default(text: &str, default_key: &TicketKey) -> Result<Self, IdError> {
        let trimmed = text.trim();
        if let Ok(number) = trimmed.parse::<i64>()
            && number > 0
        {
            return Ok(TicketId::new(default_key, number));
        }
        TicketId::parse(trimmed)
    }

    /// Parses `KEY-N` (case-insensitive).
    pub fn parse(text: &str) -> Result<Self, IdError> {
        let err = || IdError::Ticket(text.to_owned());
        let (key, number) = text.rsplit_once('-').ok_or_else(err)?;
        let key = TicketKey::parse(&key.to_ascii_uppercase()).map_err(|_| err())?;
        if number.is_empty()
            || number.starts_with('0')
            || !number.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(err());
        }
        let number: i64 = number.parse().map_err(|_| err())?;
        Ok(TicketId::new(&key, number))
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn number(&self) -> i64 {
        self.number
    }
}

impl fmt::Display for TicketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.key, self.number)
    }
}

impl FromStr for TicketId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TicketId::parse(s)
    }
}

impl Serialize for TicketId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TicketId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        TicketId::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A name of a worker, controller, owner or actor: `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`.
///
/// Names end up in paths, environment variables and argv of child processes, so they are kept to
/// a character set that is inert in all of those.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

impl Name {
    pub fn parse(text: &str) -> Result<Self, IdError> {
        let ok = (1..=64).contains(&text.len())
            && text.starts_with(|c: char| c.is_ascii_alphanumeric())
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if ok {
            Ok(Name(text.to_owned()))
        } else {
            Err(IdError::Name(text.to_owned()))
        }
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

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Name::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Declares the id of a row the store assigns (evidence, inbox items, incidents): a transparent
/// integer in storage and JSON, shown as its number.
macro_rules! store_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(i64);

        impl $name {
            pub const fn new(id: i64) -> Self {
                $name(id)
            }

            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::num::ParseIntError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.trim().parse().map($name)
            }
        }
    };
}
pub(crate) use store_id;

#[cfg(test)]
mod tests {
    use super::*;

    fn check_ticket(input: &str, expect: Result<&str, ()>) {
        let got = TicketId::parse_with_default(input, &TicketKey::default())
            .map(|id| id.to_string())
            .map_err(|_| ());
        assert_eq!(got.as_deref(), expect.as_deref(), "input {input:?}");
    }

    #[test]
    fn ticket_ids() {
        check_ticket("MC-1", Ok("MC-1"));
        check_ticket("mc-4122", Ok("MC-4122"));
        check_ticket("4122", Ok("MC-4122"));
        check_ticket(" OPS2-7 ", Ok("OPS2-7"));
        check_ticket("MC-0", Err(()));
        check_ticket("MC-01", Err(()));
        check_ticket("MC-", Err(()));
        check_ticket("-5", Err(()));
        check_ticket("0", Err(()));
        check_ticket("MC-1x", Err(()));
        check_ticket("M C-1", Err(()));
        check_ticket("MC-99999999999999999999", Err(()));
        check_ticket("", Err(()));
        check_ticket("1MC-3", Err(()));
    }

    #[test]
    fn names() {
        for ok in ["luci", "lucienne", "a", "worker-2", "x.y_z"] {
            assert!(Name::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", ".x", "a b", "a/b", "a;b", "$(x)", &"a".repeat(65)] {
            assert!(Name::parse(bad).is_err(), "{bad}");
        }
    }
}
