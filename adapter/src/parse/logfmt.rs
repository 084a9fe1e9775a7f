//! logfmt (`level=info msg="started" took=12ms`), as Vector's `parse_logfmt`: the
//! `key_value` format with `=` and a space, bare keys as `true`, values kept as strings.

use super::key_value::{self, KeyValueOptions};
use super::syntax::Failure;
use crate::record::Record;

/// The `logfmt` format.
pub fn parse(line: &str, rec: &mut Record<'_>) -> Result<(), Failure> {
    key_value::parse(line, &KeyValueOptions::default(), rec)
}

/// logfmt as `auto` accepts it: every token must be a `key=value` pair, or any sentence
/// would pass as a list of bare keys.
pub fn parse_strict(line: &str, rec: &mut Record<'_>) -> Result<(), Failure> {
    let options = KeyValueOptions {
        accept_standalone_key: false,
        ..KeyValueOptions::default()
    };
    let pairs = key_value::pairs(line, &options)?;
    if let Some((key, _)) = pairs.iter().find(|(key, _)| key.is_empty()) {
        return Err(Failure::Expected {
            what: "a key",
            at: super::syntax::offset(line, key),
        });
    }
    key_value::write_pairs(&pairs, rec);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::testing::{failure, render};
    use serde_json::json;

    #[test]
    fn vector_documented_example() {
        let line = r#"@timestamp="Sun Jan 10 16:47:39 EST 2021" level=info msg="Stopping all fetchers" tag#production=stopping_fetchers id=ConsumerFetcherManager-1382721708341 module=kafka.consumer.ConsumerFetcherManager"#;
        assert_eq!(
            render(|rec, _| parse(line, rec)),
            json!({
                "@timestamp": "Sun Jan 10 16:47:39 EST 2021",
                "level": "info",
                "msg": "Stopping all fetchers",
                "tag#production": "stopping_fetchers",
                "id": "ConsumerFetcherManager-1382721708341",
                "module": "kafka.consumer.ConsumerFetcherManager"
            })
        );
    }

    #[test]
    fn bare_keys_and_the_strict_variant() {
        assert_eq!(
            render(|rec, _| parse("debug at=start n=1", rec)),
            json!({"debug": true, "at": "start", "n": "1"})
        );
        assert!(
            failure(|rec, _| parse_strict("just a sentence", rec))
                .starts_with("expected a key-value delimiter")
        );
        assert_eq!(
            render(|rec, _| parse_strict("a=1 b=\"x y\"", rec)),
            json!({"a": "1", "b": "x y"})
        );
    }
}
