//! `key=value` pairs with configurable delimiters, as Vector's `parse_key_value`: keys and
//! values may be double-quoted (with `\"` escapes), a key without a value is `true`, a key
//! seen more than once becomes an array, and every value stays a string.

use std::borrow::Cow;

use super::ConfigError;
use super::syntax::{Failure, unescape};
use crate::record::Record;

/// The delimiters and leniency of the `key_value` format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValueOptions {
    /// Between a key and its value; `=` by default.
    pub key_value_delimiter: String,
    /// Between pairs; a space by default.
    pub field_delimiter: String,
    /// Whether whitespace around the key-value delimiter is ignored (Vector's `lenient`).
    pub lenient_whitespace: bool,
    /// Whether a bare key is accepted (as `true`) rather than failing the line.
    pub accept_standalone_key: bool,
}

impl Default for KeyValueOptions {
    fn default() -> Self {
        KeyValueOptions {
            key_value_delimiter: "=".into(),
            field_delimiter: " ".into(),
            lenient_whitespace: true,
            accept_standalone_key: true,
        }
    }
}

impl KeyValueOptions {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.key_value_delimiter.is_empty() || self.field_delimiter.is_empty() {
            return Err(ConfigError::EmptyDelimiter);
        }
        Ok(())
    }

    fn field_is_whitespace(&self) -> bool {
        self.field_delimiter.trim().is_empty()
    }
}

/// One parsed pair; `None` is a standalone key.
pub(crate) type Pair<'a> = (Cow<'a, str>, Option<Cow<'a, str>>);

/// A double-quoted token at the start of `input`: its value and what follows it.
fn quoted_token(input: &str) -> Option<(Cow<'_, str>, &str)> {
    let body = input.strip_prefix('"')?;
    let bytes = body.as_bytes();
    let mut i = 0;
    while let Some(pos) = memchr::memchr2(b'"', b'\\', &bytes[i..]) {
        let at = i + pos;
        if bytes[at] == b'\\' {
            i = at + 2;
            if i > bytes.len() {
                return None;
            }
            continue;
        }
        return Some((unescape(&body[..at]), &body[at + 1..]));
    }
    None
}

/// A bare token: up to the first of `stops`, or the end. One pass over the input, so a
/// long line with many pairs stays linear; single-byte stops (the usual `=`, space and
/// tab) are found with `memchr`.
fn bare_token<'a>(input: &'a str, stops: &[&str]) -> (&'a str, &'a str) {
    let bytes = input.as_bytes();
    let mut single = [0u8; 3];
    let mut count = 0;
    let all_single = stops.iter().all(|stop| {
        let [b] = stop.as_bytes() else {
            return false;
        };
        if !single[..count].contains(b) {
            if count == 3 {
                return false;
            }
            single[count] = *b;
            count += 1;
        }
        true
    });
    let end = if all_single {
        match count {
            1 => memchr::memchr(single[0], bytes),
            2 => memchr::memchr2(single[0], single[1], bytes),
            _ => memchr::memchr3(single[0], single[1], single[2], bytes),
        }
    } else {
        bytes
            .iter()
            .enumerate()
            .find(|&(i, b)| {
                stops.iter().any(|stop| {
                    stop.as_bytes().first() == Some(b) && bytes[i..].starts_with(stop.as_bytes())
                })
            })
            .map(|(i, _)| i)
    };
    let end = end.unwrap_or(input.len());
    (&input[..end], &input[end..])
}

/// Splits `line` into pairs.
pub(crate) fn pairs<'a>(
    line: &'a str,
    options: &KeyValueOptions,
) -> Result<Vec<Pair<'a>>, Failure> {
    let kv = options.key_value_delimiter.as_str();
    let field = options.field_delimiter.as_str();
    let ws_field = options.field_is_whitespace();
    let at = |s: &str| super::syntax::offset(line, s);
    let mut out = Vec::new();
    let mut rest = line;
    loop {
        // Skip delimiters and surrounding whitespace between pairs.
        loop {
            let trimmed = rest.trim_start();
            match trimmed.strip_prefix(field) {
                Some(after) if !field.is_empty() => rest = after,
                _ => {
                    rest = trimmed;
                    break;
                }
            }
        }
        if rest.is_empty() {
            break;
        }
        let (key, after_key) = if rest.starts_with('"') {
            quoted_token(rest).ok_or(Failure::Expected {
                what: "the closing `\"` of a key",
                at: at(rest),
            })?
        } else {
            let (key, after) = bare_token(rest, &[kv, field, " ", "\t"]);
            (Cow::Borrowed(key), after)
        };
        let mut after = after_key;
        let mut probe = after;
        if options.lenient_whitespace {
            probe = probe.trim_start();
        }
        let Some(value_start) = probe.strip_prefix(kv) else {
            if !options.accept_standalone_key {
                return Err(Failure::Expected {
                    what: "a key-value delimiter",
                    at: at(after),
                });
            }
            if key.is_empty() {
                return Err(Failure::Expected {
                    what: "a key",
                    at: at(rest),
                });
            }
            out.push((key, None));
            rest = after;
            continue;
        };
        after = value_start;
        if options.lenient_whitespace {
            let skipped = after.trim_start();
            // With whitespace as the field delimiter, `user= msg=x` means an empty `user`:
            // only skip the space when what follows is not itself a pair.
            let next_is_pair = ws_field && {
                let (token, _) = bare_token(skipped, &[" ", "\t"]);
                !skipped.starts_with('"') && token.contains(kv)
            };
            if !next_is_pair {
                after = skipped;
            }
        }
        let (value, after_value) = if after.starts_with('"') {
            quoted_token(after).ok_or(Failure::Expected {
                what: "the closing `\"` of a value",
                at: at(after),
            })?
        } else if ws_field {
            let (value, after) = bare_token(after, &[" ", "\t"]);
            (Cow::Borrowed(value), after)
        } else {
            let (value, after) = bare_token(after, &[field]);
            let value = if options.lenient_whitespace {
                value.trim()
            } else {
                value
            };
            (Cow::Borrowed(value), after)
        };
        out.push((key, Some(value)));
        rest = after_value;
    }
    if out.is_empty() {
        return Err(Failure::Expected {
            what: "a key",
            at: at(rest),
        });
    }
    Ok(out)
}

/// Writes pairs in first-seen key order; repeated keys become arrays.
pub(crate) fn write_pairs(pairs: &[Pair<'_>], rec: &mut Record<'_>) {
    for (i, (key, value)) in pairs.iter().enumerate() {
        if pairs[..i].iter().any(|(k, _)| k == key) {
            continue;
        }
        let repeats = pairs[i + 1..].iter().filter(|(k, _)| k == key).count();
        if repeats == 0 {
            match value {
                Some(value) => rec.str(key, value),
                None => rec.bool(key, true),
            }
            continue;
        }
        rec.begin_array(key);
        for (_, value) in pairs[i..].iter().filter(|(k, _)| k == key) {
            match value {
                Some(value) => rec.array_str(value),
                None => rec.array_bool(true),
            }
        }
        rec.end_array();
    }
}

/// The `key_value` format.
pub fn parse(line: &str, options: &KeyValueOptions, rec: &mut Record<'_>) -> Result<(), Failure> {
    let pairs = pairs(line, options)?;
    write_pairs(&pairs, rec);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::testing::{failure, render};
    use serde_json::json;

    fn kv(line: &str, options: &KeyValueOptions) -> serde_json::Value {
        render(|rec, _| parse(line, options, rec))
    }

    fn comma_colon() -> KeyValueOptions {
        KeyValueOptions {
            key_value_delimiter: ":".into(),
            field_delimiter: ",".into(),
            ..KeyValueOptions::default()
        }
    }

    #[test]
    fn vector_documented_examples() {
        let default = KeyValueOptions::default();
        assert_eq!(
            kv("zork=zook zonk=nork", &default),
            json!({"zork": "zook", "zonk": "nork"})
        );
        assert_eq!(
            kv(
                r#"@timestamp="Sun Jan 10 16:47:39 EST 2021" level=info msg="Stopping all fetchers" tag#production=stopping_fetchers id=ConsumerFetcherManager-1382721708341 module=kafka.consumer.ConsumerFetcherManager"#,
                &default
            ),
            json!({
                "@timestamp": "Sun Jan 10 16:47:39 EST 2021",
                "level": "info",
                "msg": "Stopping all fetchers",
                "tag#production": "stopping_fetchers",
                "id": "ConsumerFetcherManager-1382721708341",
                "module": "kafka.consumer.ConsumerFetcherManager"
            })
        );
        assert_eq!(
            kv(
                r#"path:"/cart_link", host:store.app.com, fwd: "102.30.171.16", dyno: web.1, connect:0ms, service:87ms, status:304, bytes:632, protocol:https"#,
                &comma_colon()
            ),
            json!({
                "path": "/cart_link", "host": "store.app.com", "fwd": "102.30.171.16",
                "dyno": "web.1", "connect": "0ms", "service": "87ms", "status": "304",
                "bytes": "632", "protocol": "https"
            })
        );
        assert_eq!(
            kv(
                "env:prod,service:backend,region:eu-east1,beta",
                &comma_colon()
            ),
            json!({"env": "prod", "service": "backend", "region": "eu-east1", "beta": true})
        );
        let comma_eq = KeyValueOptions {
            field_delimiter: ",".into(),
            ..KeyValueOptions::default()
        };
        assert_eq!(
            kv(
                r#"at=info,method=GET,path="/index",status=200,tags=dev,tags=dummy"#,
                &comma_eq
            ),
            json!({"at": "info", "method": "GET", "path": "/index", "status": "200", "tags": ["dev", "dummy"]})
        );
        let strict = KeyValueOptions {
            lenient_whitespace: false,
            ..KeyValueOptions::default()
        };
        assert_eq!(
            kv("app=my-app ip=1.2.3.4 user= msg=hello-world", &strict),
            json!({"app": "my-app", "ip": "1.2.3.4", "user": "", "msg": "hello-world"})
        );
    }

    #[test]
    fn lenient_whitespace_and_quoting() {
        let default = KeyValueOptions::default();
        assert_eq!(
            kv(r#"a = 1 user= msg="say \"hi\"" "quoted key"=v"#, &default),
            json!({"a": "1", "user": "", "msg": "say \"hi\"", "quoted key": "v"})
        );
    }

    #[test]
    fn multi_character_delimiters() {
        let options = KeyValueOptions {
            key_value_delimiter: "=>".into(),
            field_delimiter: "; ".into(),
            ..KeyValueOptions::default()
        };
        assert_eq!(
            kv("a=>1; b => two words; c=>x=y", &options),
            json!({"a": "1", "b": "two words", "c": "x=y"})
        );
    }

    #[test]
    fn malformed_lines_fail() {
        let default = KeyValueOptions::default();
        assert_eq!(
            failure(|rec, _| parse("", &default, rec)),
            "expected a key at byte 0"
        );
        assert_eq!(
            failure(|rec, _| parse(r#"a="unterminated"#, &default, rec)),
            "expected the closing `\"` of a value at byte 2"
        );
        let no_standalone = KeyValueOptions {
            accept_standalone_key: false,
            ..KeyValueOptions::default()
        };
        assert_eq!(
            failure(|rec, _| parse("a=1 bare", &no_standalone, rec)),
            "expected a key-value delimiter at byte 8"
        );
    }
}
