//! One vocabulary for severity across formats, so a dashboard can filter `level` without
//! knowing whether the line came from syslog (`err`), log4j (`ERROR`), glog (`E`) or
//! logcat (`E`). The original spelling is always kept in the format's own field.

/// The normalised levels, most to least severe:
/// `emergency alert critical fatal error warning notice info debug trace`.
/// `fatal` is kept apart from `critical` because glog and klog use it and Vector's
/// `parse_glog`/`parse_klog` report it as such.
pub fn normalise(raw: &str) -> Option<&'static str> {
    let raw = raw.trim();
    if raw.len() > 13 {
        return None;
    }
    let mut buf = [0u8; 13];
    for (slot, b) in buf.iter_mut().zip(raw.bytes()) {
        *slot = b.to_ascii_lowercase();
    }
    Some(match &buf[..raw.len()] {
        b"emerg" | b"emergency" | b"panic" | b"0" => "emergency",
        b"alert" | b"1" => "alert",
        b"crit" | b"critical" | b"2" => "critical",
        b"fatal" | b"f" | b"a" | b"assert" => "fatal",
        b"err" | b"error" | b"e" | b"severe" | b"3" => "error",
        b"warn" | b"warning" | b"w" | b"4" => "warning",
        b"notice" | b"n" | b"5" => "notice",
        b"info" | b"information" | b"informational" | b"i" | b"6" => "info",
        b"debug" | b"d" | b"fine" | b"config" | b"7" => "debug",
        b"trace" | b"v" | b"verbose" | b"finer" | b"finest" | b"all" => "trace",
        _ => return None,
    })
}

/// Syslog severity names as Vector's `parse_syslog` writes them, by severity number.
pub const SYSLOG_SEVERITY: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

#[cfg(test)]
mod tests {
    use super::normalise;

    #[test]
    fn spellings_from_every_format_meet() {
        for (raw, want) in [
            ("ERROR", "error"),
            ("err", "error"),
            ("E", "error"),
            ("SEVERE", "error"),
            ("WARN", "warning"),
            ("warning", "warning"),
            ("W", "warning"),
            ("crit", "critical"),
            ("emerg", "emergency"),
            ("INFO ", "info"),
            ("V", "trace"),
            ("F", "fatal"),
            ("notice", "notice"),
        ] {
            assert_eq!(normalise(raw), Some(want), "{raw}");
        }
        assert_eq!(normalise("chatty"), None);
        assert_eq!(normalise("an extremely long level name"), None);
    }
}
