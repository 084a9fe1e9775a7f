//! A strict reading of one output record: valid JSON, an object, and no object at any
//! depth that repeats a key. `serde_json::Value` silently keeps the last of two equal keys,
//! so it cannot tell; this walks the text itself. Shared by the property tests, the fuzz
//! targets and the corpus replay.

use std::collections::HashSet;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// Checks that `record` is one JSON object whose keys are unique at every depth.
pub fn check_record(record: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(record).map_err(|err| format!("not UTF-8: {err}"))?;
    let checked: Checked = serde_json::from_str(text).map_err(|err| format!("{err}: {text}"))?;
    match checked {
        Checked::Object => Ok(()),
        Checked::Other => Err(format!("not a JSON object: {text}")),
        Checked::Repeated(key) => Err(format!("key `{key}` repeated: {text}")),
    }
}

enum Checked {
    Object,
    Other,
    Repeated(String),
}

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = Checked;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked::Other)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked::Other)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked::Other)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked::Other)
    }
    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked::Other)
    }
    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        let mut result = Checked::Other;
        while let Some(inner) = seq.next_element::<Checked>()? {
            if let Checked::Repeated(_) = inner {
                result = inner;
            }
        }
        Ok(result)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        let mut seen = HashSet::new();
        let mut result = Checked::Object;
        while let Some(key) = map.next_key::<String>()? {
            let inner: Checked = map.next_value()?;
            if let Checked::Repeated(_) = inner {
                result = inner;
            }
            if !seen.insert(key.clone()) {
                result = Checked::Repeated(key);
            }
        }
        Ok(result)
    }
}
