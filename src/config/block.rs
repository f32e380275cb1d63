//! Reading one block of the config into a type that checks itself (a
//! backend's config, the failover settings), with errors that keep the key
//! they are about.
//!
//! Serde carries only a message from a nested `Deserialize`, so a block is
//! read in two steps: figment hands over the block as a [`Value`], and the
//! block's type is read from it with `serde_path_to_error`, which tracks
//! the key where an error happened. A backend's own checks report their
//! key in a [`ConfigError`]'s text, which [`from_block`] reads back.

use figment::value::Value;
use serde::{
    de::{self, DeserializeOwned, Visitor},
    forward_to_deserialize_any,
};

use crate::ConfigError;

/// Reads `T` from `value`; the error names the key inside the block, or
/// none (an empty key) when it is about the block as a whole.
pub(crate) fn from_block<T: DeserializeOwned>(value: &Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let at = match err.path().to_string() {
            root if root == "." => String::new(),
            path => path,
        };
        keyed(&at, err.inner())
    })
}

/// `err`, raised at key `at` of a block, as a `ConfigError` naming the
/// key: a backend's own `ConfigError` keeps its key (under `at`); a missing
/// or unknown field is named itself.
fn keyed(at: &str, err: &figment::Error) -> ConfigError {
    use figment::error::Kind;

    match &err.kind {
        Kind::Message(message) => {
            if let Some(own) = ConfigError::from_nested_message(at, message) {
                return own;
            }
        }
        // The path ends at an unknown field already, and at its struct for a
        // missing one.
        Kind::MissingField(field) if !at.ends_with(field.as_ref()) => {
            return ConfigError::new(join(at, field), err.kind.to_string())
        }
        _ => {}
    }
    ConfigError::new(at.to_owned(), err.kind.to_string())
}

/// `err`, with its key moved under `path`.
pub(crate) fn nest(path: &str, err: &ConfigError) -> ConfigError {
    ConfigError::new(join(path, err.key()), err.reason().to_owned())
}

fn join(path: &str, key: &str) -> String {
    match (path.is_empty(), key.is_empty()) {
        (true, _) => key.to_owned(),
        (false, true) => path.to_owned(),
        (false, false) => format!("{path}.{key}"),
    }
}

/// The keys `T` reads, as its `Deserialize` declares them: the one list,
/// so an option of another kind is named from the backends' own types and
/// never from a list kept by hand here.
pub(crate) fn fields_of<T: DeserializeOwned>() -> Vec<&'static str> {
    let mut probe = FieldProbe(None);
    // The probe refuses to produce a value: only the declared fields matter.
    let _ = T::deserialize(&mut probe);
    probe.0.map(<[_]>::to_vec).unwrap_or_default()
}

/// A deserializer that records the fields a struct asks for and yields
/// nothing.
struct FieldProbe(Option<&'static [&'static str]>);

impl<'de> de::Deserializer<'de> for &mut FieldProbe {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("field probe"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        self.0 = Some(fields);
        Err(de::Error::custom("field probe"))
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // read only to be checked
    struct Block {
        size: u32,
        name: Option<String>,
    }

    fn dict(toml: &str) -> Value {
        use figment::providers::{Format, Toml};
        figment::Figment::from(Toml::string(toml))
            .extract::<Value>()
            .unwrap()
    }

    #[test]
    fn the_fields_come_from_the_type() {
        assert_eq!(fields_of::<Block>(), ["size", "name"]);
    }

    #[test]
    fn an_error_names_the_key_inside_the_block() {
        let err = from_block::<Block>(&dict("size = \"big\"")).unwrap_err();
        assert_eq!(err.key(), "size");
        let err = from_block::<Block>(&dict("size = 1\nsise = 2")).unwrap_err();
        assert_eq!(err.key(), "sise");
        let err = from_block::<Block>(&dict("name = \"a\"")).unwrap_err();
        assert_eq!(err.key(), "size");
    }
}
