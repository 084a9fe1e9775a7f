//! The building blocks every format's `nom` parser shares: an error that says what was
//! expected and where, and the tokens log formats keep reusing (bare words, bracketed and
//! quoted fields, `-` for absent, integers).

use std::borrow::Cow;
use std::fmt;

use nom::error::{ErrorKind, ParseError};
use nom::{IResult, Parser};

/// A `nom` error that remembers the input left where it happened and a human name for
/// what the parser wanted there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Syntax<'a> {
    pub rest: &'a str,
    pub expected: &'static str,
}

impl<'a> ParseError<&'a str> for Syntax<'a> {
    fn from_error_kind(input: &'a str, _: ErrorKind) -> Self {
        Syntax {
            rest: input,
            expected: "valid syntax",
        }
    }

    fn append(_: &'a str, _: ErrorKind, other: Self) -> Self {
        other
    }

    /// Of two failed alternatives, report the one that got further into the line: it is
    /// the one whose shape the line most resembles.
    fn or(self, other: Self) -> Self {
        if other.rest.len() < self.rest.len() {
            other
        } else {
            self
        }
    }
}

pub type PResult<'a, O> = IResult<&'a str, O, Syntax<'a>>;

/// Why a line did not parse; becomes the record's `parse_error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The text at byte `at` is not what the format requires there.
    Expected { what: &'static str, at: usize },
    /// A field was found at byte `at` but its value is impossible (a 31 February).
    Invalid { what: &'static str, at: usize },
    /// A reason worded by a library (the JSON decoder), with the byte it points at.
    Other { reason: String, at: usize },
}

impl Failure {
    /// Locates a `nom` error within `line`.
    pub fn from_nom(line: &str, err: nom::Err<Syntax<'_>>) -> Failure {
        match err {
            nom::Err::Error(e) | nom::Err::Failure(e) => Failure::Expected {
                what: e.expected,
                at: offset(line, e.rest),
            },
            nom::Err::Incomplete(_) => Failure::Expected {
                what: "more input",
                at: line.len(),
            },
        }
    }

    /// How far into the line the parser got before failing.
    pub fn at(&self) -> usize {
        match self {
            Failure::Expected { at, .. }
            | Failure::Invalid { at, .. }
            | Failure::Other { at, .. } => *at,
        }
    }

    pub fn invalid(line: &str, field: &str, what: &'static str) -> Failure {
        Failure::Invalid {
            what,
            at: offset(line, field),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Expected { what, at } => write!(f, "expected {what} at byte {at}"),
            Failure::Invalid { what, at } => write!(f, "invalid {what} at byte {at}"),
            Failure::Other { reason, at } => write!(f, "{reason} at byte {at}"),
        }
    }
}

/// Byte offset of `part` within `whole` when `part` is a sub-slice of it, else the end.
pub fn offset(whole: &str, part: &str) -> usize {
    let start = whole.as_ptr() as usize;
    let at = part.as_ptr() as usize;
    if at >= start && at <= start + whole.len() {
        at - start
    } else {
        whole.len()
    }
}

/// Runs `parser` and, when it fails where it started, reports `what` there. A failure
/// further in is already more precise and is passed on unchanged.
pub fn expect<'a, O>(
    what: &'static str,
    mut parser: impl Parser<&'a str, Output = O, Error = Syntax<'a>>,
) -> impl FnMut(&'a str) -> PResult<'a, O> {
    move |input: &'a str| {
        parser.parse(input).map_err(|e| {
            e.map(|inner| {
                if inner.rest.len() < input.len() {
                    inner
                } else {
                    Syntax {
                        rest: input,
                        expected: what,
                    }
                }
            })
        })
    }
}

fn fail<'a, O>(input: &'a str, expected: &'static str) -> PResult<'a, O> {
    Err(nom::Err::Error(Syntax {
        rest: input,
        expected,
    }))
}

/// A run of characters up to the next space (at least one).
pub fn word(input: &str) -> PResult<'_, &str> {
    let end = memchr::memchr2(b' ', b'\t', input.as_bytes()).unwrap_or(input.len());
    if end == 0 {
        return fail(input, "a word");
    }
    Ok((&input[end..], &input[..end]))
}

/// One or more spaces or tabs.
pub fn spaces(input: &str) -> PResult<'_, ()> {
    let n = input
        .bytes()
        .position(|b| b != b' ' && b != b'\t')
        .unwrap_or(input.len());
    if n == 0 {
        return fail(input, "a space");
    }
    Ok((&input[n..], ()))
}

/// Zero or more spaces or tabs.
pub fn opt_spaces(input: &str) -> PResult<'_, ()> {
    Ok((input.trim_start_matches([' ', '\t']), ()))
}

/// A literal string.
pub fn lit<'a>(text: &'static str) -> impl FnMut(&'a str) -> PResult<'a, &'a str> {
    move |input: &'a str| match input.strip_prefix(text) {
        Some(rest) => Ok((rest, &input[..text.len()])),
        None => fail(input, "a literal"),
    }
}

/// `[content]` where the content holds no `]`.
pub fn bracketed(input: &str) -> PResult<'_, &str> {
    let Some(body) = input.strip_prefix('[') else {
        return fail(input, "`[`");
    };
    match body.find(']') {
        Some(end) => Ok((&body[end + 1..], &body[..end])),
        None => fail(input, "`]`"),
    }
}

/// `[content]` where the content may itself hold balanced brackets
/// (`[QuorumPeer[myid=1]/0.0.0.0:2181]`).
pub fn nested_bracketed(input: &str) -> PResult<'_, &str> {
    let Some(body) = input.strip_prefix('[') else {
        return fail(input, "`[`");
    };
    let mut depth = 1usize;
    for (i, b) in body.bytes().enumerate() {
        match b {
            b'[' => depth += 1,
            b']' => {
                depth -= 1;
                if depth == 0 {
                    return Ok((&body[i + 1..], &body[..i]));
                }
            }
            _ => {}
        }
    }
    fail(input, "`]`")
}

/// A double-quoted field as web servers write them: `\"` and `\\` are escapes. Returns
/// the raw inside text; use [`unescape`] for its value.
pub fn quoted(input: &str) -> PResult<'_, &str> {
    quoted_then(|rest| Ok((rest, ())))(input).map(|(rest, (raw, ()))| (rest, raw))
}

/// A quoted field followed by whatever `next` parses. Some servers write user agents and
/// paths with raw, unescaped quotes; when `next` fails after one candidate closing quote,
/// the next quote that is followed by a space or the end of the line is tried, so
/// `"Mozilla "compatible" bot"` stays one field.
pub fn quoted_then<'a, O>(
    mut next: impl FnMut(&'a str) -> PResult<'a, O>,
) -> impl FnMut(&'a str) -> PResult<'a, (&'a str, O)> {
    move |input: &'a str| {
        let Some(body) = input.strip_prefix('"') else {
            return fail(input, "`\"`");
        };
        let bytes = body.as_bytes();
        let mut i = 0;
        let mut first_error = None;
        while let Some(pos) = memchr::memchr2(b'"', b'\\', &bytes[i..]) {
            let at = i + pos;
            if bytes[at] == b'\\' {
                i = at + 2;
                if i > bytes.len() {
                    break;
                }
                continue;
            }
            i = at + 1;
            if !matches!(bytes.get(at + 1), None | Some(b' ') | Some(b'\t')) {
                continue;
            }
            match next(&body[at + 1..]) {
                Ok((rest, value)) => return Ok((rest, (&body[..at], value))),
                Err(nom::Err::Error(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        match first_error {
            Some(e) => Err(nom::Err::Error(e)),
            None => fail(input, "a closing `\"`"),
        }
    }
}

/// Succeeds only at the end of the input (trailing spaces allowed).
pub fn end(input: &str) -> PResult<'_, ()> {
    if input.trim_end().is_empty() {
        Ok(("", ()))
    } else {
        fail(input, "the end of the line")
    }
}

/// The value of a quoted field: `\"` → `"`, `\\` → `\`; other escapes (`\x22`) are kept
/// as written. Borrows unless an escape is present.
pub fn unescape(raw: &str) -> Cow<'_, str> {
    if memchr::memchr(b'\\', raw.as_bytes()).is_none() {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(e @ ('"' | '\\')) => out.push(e),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `-` (and the empty string) mean absent.
pub fn present(value: &str) -> Option<&str> {
    if value == "-" || value.is_empty() {
        None
    } else {
        Some(value)
    }
}

/// One or more ASCII digits.
pub fn digits(input: &str) -> PResult<'_, &str> {
    let end = input
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(input.len());
    if end == 0 {
        return fail(input, "digits");
    }
    Ok((&input[end..], &input[..end]))
}

/// A non-negative integer that fits in an `i64`.
pub fn integer(input: &str) -> PResult<'_, i64> {
    let (rest, text) = digits(input)?;
    match parse_int(text) {
        Some(value) => Ok((rest, value)),
        None => fail(input, "an integer in range"),
    }
}

/// Parses an optionally signed decimal integer without allocating.
pub fn parse_int(text: &str) -> Option<i64> {
    let (negative, body) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if body.is_empty() || body.len() > 19 {
        return None;
    }
    let mut value: i64 = 0;
    for b in body.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
    }
    Some(if negative { -value } else { value })
}

/// `-` or an integer; `Ok(None)` for `-`.
pub fn dash_or_integer(input: &str) -> PResult<'_, Option<i64>> {
    if let Some(rest) = input.strip_prefix('-')
        && (rest.is_empty() || rest.starts_with([' ', '\t']))
    {
        return Ok((rest, None));
    }
    let (rest, value) = integer(input)?;
    Ok((rest, Some(value)))
}

/// Everything that is left, with trailing whitespace removed.
pub fn rest_trimmed(input: &str) -> &str {
    input.trim_end()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_fields_handle_escapes_and_stray_quotes() {
        assert_eq!(
            quoted(r#""GET / HTTP/1.1" 200"#),
            Ok((" 200", "GET / HTTP/1.1"))
        );
        assert_eq!(quoted(r#""a \"b\" c" x"#), Ok((" x", r#"a \"b\" c"#)));
        assert_eq!(unescape(r#"a \"b\" c\\d\x22"#), r#"a "b" c\d\x22"#);
        // An unescaped quote mid-value does not end the field when what follows fails.
        assert_eq!(
            quoted_then(end)(r#""Mozilla "compatible" bot""#),
            Ok(("", (r#"Mozilla "compatible" bot"#, ())))
        );
        assert_eq!(quoted(r#""""#), Ok(("", "")));
        assert!(quoted(r#""never closed"#).is_err());
        assert!(quoted(r#""trailing backslash\"#).is_err());
    }

    #[test]
    fn brackets_nest_when_asked() {
        assert_eq!(bracketed("[a b] c"), Ok((" c", "a b")));
        assert_eq!(nested_bracketed("[a[b]c] d"), Ok((" d", "a[b]c")));
        assert!(nested_bracketed("[a[b] d").is_err());
    }

    #[test]
    fn integers_reject_overflow() {
        assert_eq!(parse_int("-12"), Some(-12));
        assert_eq!(parse_int("99999999999999999999"), None);
        assert_eq!(dash_or_integer("- x"), Ok((" x", None)));
        assert_eq!(dash_or_integer("42 x"), Ok((" x", Some(42))));
        assert!(dash_or_integer("-4").is_err());
    }

    #[test]
    fn expect_reports_the_start_position() {
        let line = "abc def";
        let err = expect("a number", digits)(&line[4..]).expect_err("not digits");
        assert_eq!(
            Failure::from_nom(line, err),
            Failure::Expected {
                what: "a number",
                at: 4
            }
        );
        assert_eq!(
            Failure::Expected {
                what: "a number",
                at: 4
            }
            .to_string(),
            "expected a number at byte 4"
        );
    }
}
