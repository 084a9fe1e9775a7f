//! The structured record: ordered, typed fields written straight into the output buffer
//! as one line of JSON.
//!
//! A record is never built as a tree and serialised afterwards: at the rates the adapter
//! must sustain (hundreds of thousands of lines a second on one core) a map per line costs
//! more than the parsing. Parsers first split a line into borrowed slices, then write each
//! field here in the order the schema documents; the only allocation is the output buffer,
//! which the caller reuses line after line.

use std::borrow::Cow;
use std::collections::HashSet;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::parse::timestamp::Timestamp;

/// The names used so far at one level of a record, for fields whose names come from the
/// line itself (key-value keys, CEF extension keys, RFC 5424 SD-IDs and parameters, nginx
/// error context, JSON keys). A JSON object with a repeated key is ambiguous (parsers keep
/// the first, the last, or fail), so every name is written once per object:
///
/// **the first field to claim a name keeps it; a later field with the same name gets `_`
/// prepended until the name is free** (`name`, then `_name`, then `__name`). Nothing is
/// dropped, and the fields a format always writes are claimed first, so they keep their
/// documented names.
#[derive(Debug, Default)]
pub struct Names<'a> {
    /// The format's own field names, claimed before anything from the line.
    fixed: &'static [&'static str],
    /// The first names borrowed from the line, kept without allocating: most lines have
    /// a handful, and this runs for every RFC 5424 line with structured data.
    inline: [&'a str; INLINE_NAMES],
    inline_len: usize,
    /// Further and prefixed names; hashed, so a line with thousands of keys stays linear.
    spill: HashSet<Cow<'a, str>>,
}

const INLINE_NAMES: usize = 8;

impl<'a> Names<'a> {
    /// A set with the format's own `fixed` names already claimed.
    pub fn with(fixed: &'static [&'static str]) -> Self {
        Names {
            fixed,
            ..Names::default()
        }
    }

    fn contains(&self, name: &str) -> bool {
        self.fixed.contains(&name)
            || self.inline[..self.inline_len].contains(&name)
            || (!self.spill.is_empty() && self.spill.contains(name))
    }

    fn insert(&mut self, name: Cow<'a, str>) {
        match name {
            Cow::Borrowed(name) if self.inline_len < INLINE_NAMES => {
                self.inline[self.inline_len] = name;
                self.inline_len += 1;
            }
            name => {
                self.spill.insert(name);
            }
        }
    }

    /// Claims `wanted`, or the first free `_`-prefixed form of it, and returns the name to
    /// write.
    pub fn claim(&mut self, wanted: &'a str) -> Cow<'a, str> {
        if !self.contains(wanted) {
            self.insert(Cow::Borrowed(wanted));
            return Cow::Borrowed(wanted);
        }
        let name = self.free_prefixed(wanted);
        self.insert(Cow::Owned(name.clone()));
        Cow::Owned(name)
    }

    /// [`Names::claim`] for a name the caller owns.
    pub fn claim_owned(&mut self, wanted: String) -> String {
        let name = if self.contains(&wanted) {
            self.free_prefixed(&wanted)
        } else {
            wanted
        };
        self.insert(Cow::Owned(name.clone()));
        name
    }

    fn free_prefixed(&self, wanted: &str) -> String {
        let mut name = String::with_capacity(wanted.len() + 1);
        name.push('_');
        name.push_str(wanted);
        while self.contains(&name) {
            name.insert(0, '_');
        }
        name
    }
}

/// The top-level keys of a JSON object text, collected without building its values.
struct TopLevelKeys(Vec<String>);

impl<'de> serde::Deserialize<'de> for TopLevelKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeysVisitor;
        impl<'de> Visitor<'de> for KeysVisitor {
            type Value = TopLevelKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevelKeys, A::Error> {
                let mut keys = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    map.next_value::<IgnoredAny>()?;
                    keys.push(key);
                }
                Ok(TopLevelKeys(keys))
            }
        }
        deserializer.deserialize_map(KeysVisitor)
    }
}

/// Bytes that JSON forbids raw inside a string, plus `"` and `\`.
static NEEDS_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        table[i] = true;
        i += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    // DEL is legal JSON but invisible and breaks terminals that tail the output.
    table[0x7f] = true;
    table
};

const HEX: &[u8; 16] = b"0123456789abcdef";

const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

/// Whether any of the eight bytes in `word` needs escaping: a control byte, `"`, `\` or
/// DEL. Checking a word at a time lets the common case (plain text) skip ahead fast; the
/// four tests are combined without branches, so a clean word costs one.
fn word_needs_escape(word: u64) -> bool {
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    (below_space
        | has_zero(word ^ (ONES * u64::from(b'"')))
        | has_zero(word ^ (ONES * u64::from(b'\\')))
        | has_zero(word ^ (ONES * 0x7f)))
        != 0
}

/// Appends `value` as a quoted JSON string.
pub fn write_json_string(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    // One capacity check for the usual case of nothing to escape.
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // Skip the clean prefix eight bytes at a time.
    let mut clean = 0;
    for chunk in bytes.chunks_exact(8) {
        let word = u64::from_ne_bytes(chunk.try_into().unwrap_or([0; 8]));
        if word_needs_escape(word) {
            break;
        }
        clean += 8;
    }
    let mut run_start = 0;
    for (i, &b) in bytes.iter().enumerate().skip(clean) {
        if !NEEDS_ESCAPE[b as usize] {
            continue;
        }
        out.extend_from_slice(&bytes[run_start..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xf) as usize]);
            }
        }
        run_start = i + 1;
    }
    out.extend_from_slice(&bytes[run_start..]);
    out.push(b'"');
}

/// One record being written. Fields appear in the JSON in the order they are added.
///
/// Nested objects and arrays are opened and closed explicitly; the separator logic looks
/// at the last byte written, so no per-level state is kept.
pub struct Record<'o> {
    out: &'o mut Vec<u8>,
    start: usize,
}

impl<'o> Record<'o> {
    /// Starts a record at the end of `out`.
    pub fn begin(out: &'o mut Vec<u8>) -> Self {
        let start = out.len();
        out.push(b'{');
        Record { out, start }
    }

    /// Discards every field written so far, leaving an empty record: used when a parser
    /// fails after it started writing, so the line is emitted raw instead.
    pub fn reset(&mut self) {
        self.out.truncate(self.start + 1);
    }

    /// Whether no field has been written yet.
    pub fn is_empty(&self) -> bool {
        self.out.len() == self.start + 1
    }

    fn separator(&mut self) {
        match self.out.last() {
            Some(b'{') | Some(b'[') => {}
            _ => self.out.push(b','),
        }
    }

    fn key(&mut self, key: &str) {
        self.separator();
        write_json_string(self.out, key);
        self.out.push(b':');
    }

    pub fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        write_json_string(self.out, value);
    }

    /// Writes the field unless the value is absent.
    pub fn opt_str(&mut self, key: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.str(key, value);
        }
    }

    pub fn int(&mut self, key: &str, value: i64) {
        self.key(key);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    pub fn opt_int(&mut self, key: &str, value: Option<i64>) {
        if let Some(value) = value {
            self.int(key, value);
        }
    }

    /// Writes a float; JSON has no NaN or infinity, so those become `null`.
    pub fn float(&mut self, key: &str, value: f64) {
        self.key(key);
        if value.is_finite() {
            self.out
                .extend_from_slice(ryu::Buffer::new().format_finite(value).as_bytes());
        } else {
            self.out.extend_from_slice(b"null");
        }
    }

    pub fn bool(&mut self, key: &str, value: bool) {
        self.key(key);
        self.out
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    /// Writes an RFC 3339 UTC timestamp string.
    pub fn timestamp(&mut self, key: &str, value: Timestamp) {
        self.key(key);
        self.out.push(b'"');
        value.write_rfc3339(self.out);
        self.out.push(b'"');
    }

    /// Opens a nested object; close it with [`Record::end_object`].
    pub fn begin_object(&mut self, key: &str) {
        self.key(key);
        self.out.push(b'{');
    }

    pub fn end_object(&mut self) {
        self.out.push(b'}');
    }

    /// Opens an array; add elements with [`Record::array_str`], close with [`Record::end_array`].
    pub fn begin_array(&mut self, key: &str) {
        self.key(key);
        self.out.push(b'[');
    }

    pub fn array_str(&mut self, value: &str) {
        self.separator();
        write_json_string(self.out, value);
    }

    pub fn array_bool(&mut self, value: bool) {
        self.separator();
        self.out
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    pub fn end_array(&mut self) {
        self.out.push(b']');
    }

    /// Writes the members of an already valid JSON object text (`{...}`) into this record,
    /// so fields added afterwards land inside the same object. The caller guarantees
    /// `object` was validated as a JSON object.
    pub fn splice_object(&mut self, object: &str) {
        let inner = object
            .trim()
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .unwrap_or("")
            .trim();
        if !inner.is_empty() {
            self.out.extend_from_slice(inner.as_bytes());
        }
    }

    /// Writes one of the adapter's own flags (`truncated`, `invalid_utf8`) after the parsed
    /// fields. The line's fields win a name clash: when the line already produced a field
    /// called `name`, the flag is written as `_name` (or `__name`, ...), see [`Names`].
    /// Flags are rare, so finding the names already written by reading the record back
    /// costs nothing on the common path.
    pub fn flag(&mut self, name: &str) {
        let mut written = self.out[self.start..].to_vec();
        written.push(b'}');
        let keys = serde_json::from_slice::<TopLevelKeys>(&written)
            .map(|keys| keys.0)
            .unwrap_or_default();
        let mut names = Names::default();
        for key in keys {
            names.claim_owned(key);
        }
        let name = names.claim(name);
        self.bool(&name, true);
    }

    /// Closes the record and ends the line.
    pub fn finish(self) {
        self.out.extend_from_slice(b"}\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(build: impl FnOnce(&mut Record<'_>)) -> String {
        let mut out = Vec::new();
        let mut record = Record::begin(&mut out);
        build(&mut record);
        record.finish();
        String::from_utf8(out).expect("record output is UTF-8")
    }

    #[test]
    fn fields_keep_their_order_and_types() {
        let line = render(|r| {
            r.str("b", "x");
            r.int("a", -42);
            r.float("f", 1.0);
            r.bool("t", true);
            r.opt_str("absent", None);
            r.opt_int("n", Some(7));
        });
        assert_eq!(
            line,
            "{\"b\":\"x\",\"a\":-42,\"f\":1.0,\"t\":true,\"n\":7}\n"
        );
    }

    #[test]
    fn strings_are_escaped_so_the_record_stays_one_line() {
        let line = render(|r| r.str("m", "a\"b\\c\nd\re\tf\u{1}g\u{7f}é"));
        assert_eq!(
            line,
            "{\"m\":\"a\\\"b\\\\c\\nd\\re\\tf\\u0001g\\u007fé\"}\n"
        );
        let parsed: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(parsed["m"], "a\"b\\c\nd\re\tf\u{1}g\u{7f}é");
    }

    #[test]
    fn escapes_are_found_at_every_offset_of_the_word_scan() {
        for special in ['"', '\\', '\n', '\u{1}', '\u{1f}', '\u{7f}'] {
            for at in 0..20 {
                let mut text: String = "ab\u{e9}cdefghijklmnopqrstuvw".chars().take(at).collect();
                text.push(special);
                text.push_str("tail é ok");
                let mut out = Vec::new();
                write_json_string(&mut out, &text);
                let back: String = serde_json::from_slice(&out).expect("valid JSON string");
                assert_eq!(back, text);
                let raw = &out[1..out.len() - 1];
                assert!(
                    !raw.iter().any(|b| *b < 0x20 || *b == 0x7f),
                    "raw control byte left in {text:?}"
                );
            }
        }
    }

    #[test]
    fn nested_objects_and_arrays_get_separators_right() {
        let line = render(|r| {
            r.begin_object("sd");
            r.str("k", "v");
            r.str("k2", "v2");
            r.end_object();
            r.begin_object("empty");
            r.end_object();
            r.begin_array("tags");
            r.array_str("a");
            r.array_str("b");
            r.end_array();
            r.str("after", "z");
        });
        assert_eq!(
            line,
            "{\"sd\":{\"k\":\"v\",\"k2\":\"v2\"},\"empty\":{},\"tags\":[\"a\",\"b\"],\"after\":\"z\"}\n"
        );
    }

    #[test]
    fn names_are_claimed_once_later_ones_get_a_prefix() {
        let keys: Vec<String> = (0..40).map(|i| format!("k{}", i % 20)).collect();
        let mut names = Names::with(&["message"]);
        assert_eq!(names.claim("message"), "_message");
        assert_eq!(names.claim("_message"), "__message");
        assert_eq!(names.claim_owned("message".into()), "___message");
        let claimed: Vec<String> = keys.iter().map(|k| names.claim(k).into_owned()).collect();
        // Twenty distinct names (past the inline ones), then each again with a prefix.
        assert_eq!(claimed[..20], keys[..20]);
        for (later, first) in claimed[20..].iter().zip(&keys[..20]) {
            assert_eq!(*later, format!("_{first}"));
        }
    }

    #[test]
    fn a_flag_moves_aside_when_the_line_has_a_field_of_its_name() {
        let line = render(|r| {
            r.str("truncated", "no");
            r.begin_object("nested");
            r.bool("truncated", false);
            r.end_object();
            r.flag("truncated");
            r.flag("invalid_utf8");
        });
        assert_eq!(
            line,
            "{\"truncated\":\"no\",\"nested\":{\"truncated\":false},\"_truncated\":true,\"invalid_utf8\":true}\n"
        );
    }

    #[test]
    fn non_finite_floats_become_null() {
        assert_eq!(render(|r| r.float("x", f64::NAN)), "{\"x\":null}\n");
    }

    #[test]
    fn reset_discards_partial_fields() {
        let line = render(|r| {
            r.str("half", "written");
            r.reset();
            assert!(r.is_empty());
            r.str("message", "raw");
        });
        assert_eq!(line, "{\"message\":\"raw\"}\n");
    }

    #[test]
    fn spliced_object_accepts_more_fields() {
        let line = render(|r| {
            r.splice_object(" { \"a\" : 1 } ");
            r.bool("truncated", true);
        });
        assert_eq!(line, "{\"a\" : 1,\"truncated\":true}\n");
        let empty = render(|r| {
            r.splice_object("{}");
            r.bool("x", true);
        });
        assert_eq!(empty, "{\"x\":true}\n");
    }
}
