//! JSON passthrough: a line that already is a JSON object is emitted as it is (after
//! validation), so services that log JSON can share a pipeline with legacy ones. Anything
//! else, including a JSON array or scalar, is not a record and is kept raw.

use serde::de::IgnoredAny;

use super::syntax::{Failure, offset};
use crate::record::Record;

/// The `json` format.
pub fn parse(line: &str, rec: &mut Record<'_>) -> Result<(), Failure> {
    let object = line.trim();
    if !object.starts_with('{') {
        return Err(Failure::Expected {
            what: "a JSON object",
            at: offset(line, object),
        });
    }
    if let Err(err) = serde_json::from_str::<IgnoredAny>(object) {
        let text = err.to_string();
        let reason = text.split(" at line ").next().unwrap_or(&text);
        return Err(Failure::Other {
            reason: format!("invalid JSON: {reason}"),
            at: offset(line, object) + err.column().saturating_sub(1),
        });
    }
    rec.splice_object(object);
    Ok(())
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
