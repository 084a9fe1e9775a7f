//! JSON passthrough: a line that already is a JSON object is emitted as it is (after
//! validation), so services that log JSON can share a pipeline with legacy ones. Anything
//! else, including a JSON array or scalar, is not a record and is kept raw.
//!
//! JSON allows an object to repeat a key, but readers disagree on what it means (the
//! first wins, the last wins, or an error), so the adapter never writes one: an object
//! with a repeated key, at any depth, is rewritten with the later occurrences
//! `_`-prefixed, as everywhere else (see [`crate::record::Names`]).

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::syntax::{Failure, offset};
use crate::record::{Names, Record, write_json_string};

/// The `json` format.
pub fn parse(line: &str, rec: &mut Record<'_>) -> Result<(), Failure> {
    let object = line.trim();
    if !object.starts_with('{') {
        return Err(Failure::Expected {
            what: "a JSON object",
            at: offset(line, object),
        });
    }
    let has_repeated_key = match serde_json::from_str::<RepeatedKey>(object) {
        Ok(RepeatedKey(found)) => found,
        Err(err) => {
            let text = err.to_string();
            let reason = text.split(" at line ").next().unwrap_or(&text);
            return Err(Failure::Other {
                reason: format!("invalid JSON: {reason}"),
                at: offset(line, object) + err.column().saturating_sub(1),
            });
        }
    };
    if !has_repeated_key {
        rec.splice_object(object);
        return Ok(());
    }
    let mut rewritten = Vec::with_capacity(object.len() + 16);
    let mut deserializer = serde_json::Deserializer::from_str(object);
    Rewrite(&mut rewritten)
        .deserialize(&mut deserializer)
        .map_err(|err| Failure::Other {
            reason: format!("invalid JSON: {err}"),
            at: offset(line, object),
        })?;
    rec.splice_object(std::str::from_utf8(&rewritten).unwrap_or("{}"));
    Ok(())
}

/// An object key, borrowed from the line when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Validates a JSON text and tells whether any object in it repeats a key.
struct RepeatedKey(bool);

impl<'de> Deserialize<'de> for RepeatedKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RepeatedKeyVisitor)
    }
}

struct RepeatedKeyVisitor;

impl<'de> Visitor<'de> for RepeatedKeyVisitor {
    type Value = RepeatedKey;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<RepeatedKey, E> {
        Ok(RepeatedKey(false))
    }
    fn visit_i64<E>(self, _: i64) -> Result<RepeatedKey, E> {
        Ok(RepeatedKey(false))
    }
    fn visit_u64<E>(self, _: u64) -> Result<RepeatedKey, E> {
        Ok(RepeatedKey(false))
    }
    fn visit_f64<E>(self, _: f64) -> Result<RepeatedKey, E> {
        Ok(RepeatedKey(false))
    }
    fn visit_str<E>(self, _: &str) -> Result<RepeatedKey, E> {
        Ok(RepeatedKey(false))
    }
    fn visit_unit<E>(self) -> Result<RepeatedKey, E> {
        Ok(RepeatedKey(false))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RepeatedKey, A::Error> {
        let mut found = false;
        while let Some(RepeatedKey(inner)) = seq.next_element()? {
            found |= inner;
        }
        Ok(RepeatedKey(found))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RepeatedKey, A::Error> {
        let mut keys: Vec<Cow<'de, str>> = Vec::new();
        let mut found = false;
        while let Some(Key(key)) = map.next_key()? {
            found |= keys.contains(&key);
            keys.push(key);
            let RepeatedKey(inner) = map.next_value()?;
            found |= inner;
        }
        Ok(RepeatedKey(found))
    }
}

/// Re-writes a JSON value into the buffer with every object's keys made unique.
struct Rewrite<'o>(&'o mut Vec<u8>);

impl<'de> DeserializeSeed<'de> for Rewrite<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Rewrite<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.0.extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.0
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.0
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        // JSON text never holds a non-finite number; stay valid regardless.
        if v.is_finite() {
            self.0
                .extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
        } else {
            self.0.extend_from_slice(b"null");
        }
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        write_json_string(self.0, v);
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.0.extend_from_slice(b"null");
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.0.push(b'[');
        let mut first = true;
        loop {
            let mark = self.0.len();
            if !first {
                self.0.push(b',');
            }
            if seq.next_element_seed(Rewrite(self.0))?.is_none() {
                self.0.truncate(mark);
                break;
            }
            first = false;
        }
        self.0.push(b']');
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.0.push(b'{');
        let mut names = Names::default();
        let mut first = true;
        while let Some(Key(key)) = map.next_key()? {
            if !first {
                self.0.push(b',');
            }
            first = false;
            let name = names.claim_owned(key.into_owned());
            write_json_string(self.0, &name);
            self.0.push(b':');
            map.next_value_seed(Rewrite(self.0))?;
        }
        self.0.push(b'}');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::testing::{failure, render};
    use serde_json::json;

    #[test]
    fn objects_pass_through() {
        let line = r#" {"level":"info","n":1.5,"nested":{"a":[1,null]},"msg":"a\nb"} "#;
        assert_eq!(
            render(|rec, _| parse(line, rec)),
            json!({"level": "info", "n": 1.5, "nested": {"a": [1, null]}, "msg": "a\nb"})
        );
        assert_eq!(render(|rec, _| parse("{}", rec)), json!({}));
    }

    #[test]
    fn repeated_keys_are_kept_under_prefixed_names_at_every_depth() {
        let line = r#"{"a":1,"b":{"x":true,"x":[{"k":"1","k":null}]},"a":"two","_a":3.5,"a":-4}"#;
        let mut out = Vec::new();
        let mut rec = Record::begin(&mut out);
        parse(line, &mut rec).expect("valid JSON");
        rec.finish();
        assert_eq!(
            String::from_utf8(out).expect("UTF-8"),
            r#"{"a":1,"b":{"x":true,"_x":[{"k":"1","_k":null}]},"_a":"two","__a":3.5,"___a":-4}"#
                .to_owned()
                + "\n"
        );
    }

    #[test]
    fn non_objects_and_broken_json_fail() {
        assert_eq!(
            failure(|rec, _| parse("[1,2]", rec)),
            "expected a JSON object at byte 0"
        );
        assert_eq!(
            failure(|rec, _| parse(r#"{"a": tru}"#, rec)),
            "invalid JSON: expected ident at byte 9"
        );
        assert!(
            failure(|rec, _| parse(r#"{"a":1} trailing"#, rec))
                .starts_with("invalid JSON: trailing characters")
        );
    }
}
