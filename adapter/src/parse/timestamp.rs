//! Timestamps shared by every format: calendar arithmetic, time zones for formats that
//! carry no offset, year inference for formats that carry no year, and the RFC 3339 UTC
//! form every record uses.
//!
//! Calendar maths is done by hand (days-from-civil) rather than through a date library on
//! the hot path: a log line's timestamp is parsed hundreds of thousands of times a second,
//! and the library is only needed for named zones, whose offsets are cached per minute.

use std::str::FromStr;

use chrono::{NaiveDate, TimeZone as _};
use thiserror::Error;

/// An instant in UTC with nanosecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp {
    pub secs: i64,
    pub nanos: u32,
}

impl Timestamp {
    /// Writes `YYYY-MM-DDTHH:MM:SS[.fff|.ffffff|.fffffffff]Z`: the fraction uses the
    /// fewest of 3, 6 or 9 digits that is exact, as Vector renders timestamps.
    pub fn write_rfc3339(self, out: &mut Vec<u8>) {
        let days = self.secs.div_euclid(86_400);
        let rem = self.secs.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        // Filled on the stack and appended once: this runs for nearly every record.
        let mut text = *b"0000-00-00T00:00:00.000000000Z";
        let four_digit_year = (0..=9999).contains(&year);
        if four_digit_year {
            put_digits(&mut text[0..4], year as u32);
        }
        put_digits(&mut text[5..7], month);
        put_digits(&mut text[8..10], day);
        put_digits(&mut text[11..13], rem / 3600);
        put_digits(&mut text[14..16], rem / 60 % 60);
        put_digits(&mut text[17..19], rem % 60);
        let end = if self.nanos == 0 {
            19
        } else if self.nanos.is_multiple_of(1_000_000) {
            put_digits(&mut text[20..23], self.nanos / 1_000_000);
            23
        } else if self.nanos.is_multiple_of(1_000) {
            put_digits(&mut text[20..26], self.nanos / 1_000);
            26
        } else {
            put_digits(&mut text[20..29], self.nanos);
            29
        };
        text[end] = b'Z';
        if four_digit_year {
            out.extend_from_slice(&text[..=end]);
        } else {
            // Out of the four-digit range only through absurd input; keep it valid RFC 3339-ish.
            out.extend_from_slice(itoa::Buffer::new().format(year).as_bytes());
            out.extend_from_slice(&text[4..=end]);
        }
    }

    /// The RFC 3339 text, for tests and error messages.
    pub fn to_rfc3339(self) -> String {
        let mut out = Vec::with_capacity(32);
        self.write_rfc3339(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Writes `value` as decimal digits filling `slot`, zero-padded on the left.
fn put_digits(slot: &mut [u8], mut value: u32) {
    for digit in slot.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
pub fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year as i32, month, day)
}

pub fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

pub fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// `Jan`..`Dec`, any case.
pub fn month_from_abbr(text: &str) -> Option<u32> {
    let b = text.as_bytes();
    if b.len() != 3 {
        return None;
    }
    let key = [
        b[0].to_ascii_lowercase(),
        b[1].to_ascii_lowercase(),
        b[2].to_ascii_lowercase(),
    ];
    Some(match &key {
        b"jan" => 1,
        b"feb" => 2,
        b"mar" => 3,
        b"apr" => 4,
        b"may" => 5,
        b"jun" => 6,
        b"jul" => 7,
        b"aug" => 8,
        b"sep" => 9,
        b"oct" => 10,
        b"nov" => 11,
        b"dec" => 12,
        _ => return None,
    })
}

/// A wall-clock reading as written in a log line, not yet tied to a zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalDateTime {
    pub year: i32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub nanos: u32,
}

impl LocalDateTime {
    /// Seconds since the epoch if this reading were UTC, or `None` for an impossible date.
    /// Second 60 is accepted (leap seconds in RFC 5424) and rolls into the next minute.
    pub fn epoch_seconds(&self) -> Option<i64> {
        if !(1..=12).contains(&self.month)
            || self.day == 0
            || self.day > days_in_month(self.year, self.month)
            || self.hour > 23
            || self.minute > 59
            || self.second > 60
            || self.nanos >= 1_000_000_000
        {
            return None;
        }
        let days = days_from_civil(self.year, self.month, self.day);
        Some(
            days * 86_400
                + i64::from(self.hour) * 3600
                + i64::from(self.minute) * 60
                + i64::from(self.second),
        )
    }

    /// The instant when the reading carries its own UTC offset (in seconds east of UTC).
    pub fn with_offset(&self, offset_secs: i32) -> Option<Timestamp> {
        Some(Timestamp {
            secs: self.epoch_seconds()? - i64::from(offset_secs),
            nanos: self.nanos,
        })
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "unknown time zone `{0}`: use UTC, a fixed offset such as +02:00, or an IANA name such as Europe/Berlin"
)]
pub struct TimeZoneError(pub String);

/// The zone assumed for formats whose timestamps carry no offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeZone {
    #[default]
    Utc,
    /// Seconds east of UTC.
    Fixed(i32),
    Named(chrono_tz::Tz),
}

impl FromStr for TimeZone {
    type Err = TimeZoneError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        if trimmed.eq_ignore_ascii_case("utc") || trimmed == "Z" {
            return Ok(TimeZone::Utc);
        }
        if let Some(offset) = parse_offset(trimmed) {
            return Ok(if offset == 0 {
                TimeZone::Utc
            } else {
                TimeZone::Fixed(offset)
            });
        }
        trimmed
            .parse::<chrono_tz::Tz>()
            .map(TimeZone::Named)
            .map_err(|_| TimeZoneError(text.to_owned()))
    }
}

/// `Z`, `+hh:mm`, `+hhmm`, `+hh`, or the same with `-`, as seconds east of UTC.
pub fn parse_offset(text: &str) -> Option<i32> {
    if text == "Z" || text == "z" {
        return Some(0);
    }
    let b = text.as_bytes();
    let sign = match b.first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits = &b[1..];
    let (hours, minutes) = match digits.len() {
        2 => (num(digits)?, 0),
        4 => (num(&digits[..2])?, num(&digits[2..])?),
        5 if digits[2] == b':' => (num(&digits[..2])?, num(&digits[3..])?),
        _ => return None,
    };
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some(sign * (hours as i32 * 3600 + minutes as i32 * 60))
}

/// Parses ASCII digits; `None` for an empty slice, anything else, or overflow.
pub fn num(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 9 {
        return None;
    }
    let mut value = 0u32;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u32::from(d - b'0');
    }
    Some(value)
}

/// Nanoseconds from the digits of a decimal fraction (`"119"` → 119 000 000); extra
/// digits beyond nine are ignored.
pub fn fraction_nanos(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut nanos = 0u32;
    for i in 0..9 {
        nanos = nanos * 10 + digits.get(i).map_or(0, |d| u32::from(d - b'0'));
    }
    Some(nanos)
}

/// Resolves the year of dates written without one (syslog, klog, logcat).
///
/// The first date of a stream takes the current year, or the previous one if that would
/// put it more than a day in the future (a December line read in January). After that the
/// year follows the stream: a jump from late in the year to early in the year is a new
/// year, so an archive that crosses New Year keeps increasing instead of jumping back
/// eleven months, which is the bug of resolving every line against the clock alone.
#[derive(Debug, Clone)]
pub struct YearResolver {
    today: (i32, u32, u32),
    last: Option<(i32, u32)>,
}

impl YearResolver {
    pub fn new(today: (i32, u32, u32)) -> Self {
        YearResolver { today, last: None }
    }

    pub fn from_clock() -> Self {
        let now = chrono::Utc::now().date_naive();
        use chrono::Datelike;
        YearResolver::new((now.year(), now.month(), now.day()))
    }

    /// The year for a `month`/`day` reading.
    pub fn resolve(&mut self, month: u32, day: u32) -> i32 {
        if !(1..=12).contains(&month) {
            // Not a date; the caller rejects it. Keep the stream state untouched.
            return self.today.0;
        }
        let year = match self.last {
            None => {
                let (ty, tm, td) = self.today;
                let today = days_from_civil(ty, tm, td);
                let candidate = days_from_civil(ty, month, day.min(days_in_month(ty, month)));
                let year = if candidate - today > 1 { ty - 1 } else { ty };
                self.last = Some((year, month));
                year
            }
            Some((last_year, last_month)) => {
                if month + 6 < last_month {
                    // December → January: the stream crossed into a new year.
                    self.last = Some((last_year + 1, month));
                    last_year + 1
                } else if month > last_month + 6 {
                    // A straggler from before New Year after the stream moved on; do not
                    // drag the stream's year back for it.
                    last_year - 1
                } else {
                    self.last = Some((last_year, month));
                    last_year
                }
            }
        };
        if month == 2 && day == 29 && !is_leap(year) {
            // 29 February only exists in leap years: the most recent one before is meant.
            (year - 8..year).rev().find(|y| is_leap(*y)).unwrap_or(year)
        } else {
            year
        }
    }
}

/// Everything a format needs to turn a written time into an instant: the zone for
/// offset-less timestamps and the year state for year-less ones.
#[derive(Debug, Clone)]
pub struct TimeContext {
    pub zone: TimeZone,
    pub years: YearResolver,
    /// Local minute (as epoch minutes) → offset, for named zones.
    cached_minute: i64,
    cached_offset: i32,
}

impl TimeContext {
    pub fn new(zone: TimeZone, years: YearResolver) -> Self {
        TimeContext {
            zone,
            years,
            cached_minute: i64::MIN,
            cached_offset: 0,
        }
    }

    /// The instant of a wall-clock reading in the configured zone. In a repeated hour
    /// (clocks going back) the earlier instant is taken; in a skipped hour (clocks going
    /// forward) the offset in force before the change is used.
    pub fn to_utc(&mut self, local: &LocalDateTime) -> Option<Timestamp> {
        let local_secs = local.epoch_seconds()?;
        let offset = match self.zone {
            TimeZone::Utc => 0,
            TimeZone::Fixed(offset) => offset,
            TimeZone::Named(tz) => {
                let minute = local_secs.div_euclid(60);
                if minute == self.cached_minute {
                    self.cached_offset
                } else {
                    let offset = named_offset(tz, local_secs)?;
                    self.cached_minute = minute;
                    self.cached_offset = offset;
                    offset
                }
            }
        };
        Some(Timestamp {
            secs: local_secs - i64::from(offset),
            nanos: local.nanos,
        })
    }

    /// Converts a reading given as its parts; `year` `None` means the line has none and it
    /// is inferred.
    pub fn resolve(
        &mut self,
        year: Option<i32>,
        month: u32,
        day: u32,
        (hour, minute, second, nanos): (u32, u32, u32, u32),
    ) -> Option<Timestamp> {
        let local = LocalDateTime {
            year: year.unwrap_or(0),
            month,
            day,
            hour,
            minute,
            second,
            nanos,
        };
        match year {
            Some(_) => self.to_utc(&local),
            None => self.yearless_to_utc(local),
        }
    }

    /// Resolves the year of a year-less reading, then converts it.
    pub fn yearless_to_utc(&mut self, mut local: LocalDateTime) -> Option<Timestamp> {
        local.year = self.years.resolve(local.month, local.day);
        self.to_utc(&local)
    }
}

fn named_offset(tz: chrono_tz::Tz, local_secs: i64) -> Option<i32> {
    use chrono::Offset;
    let days = local_secs.div_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let rem = local_secs.rem_euclid(86_400) as u32;
    let naive =
        NaiveDate::from_ymd_opt(y, m, d)?.and_hms_opt(rem / 3600, rem / 60 % 60, rem % 60)?;
    match tz.offset_from_local_datetime(&naive) {
        chrono::LocalResult::Single(offset) => Some(offset.fix().local_minus_utc()),
        chrono::LocalResult::Ambiguous(earliest, _) => Some(earliest.fix().local_minus_utc()),
        chrono::LocalResult::None => {
            // In the gap: take the offset that held an hour earlier, i.e. before the jump.
            let before = naive - chrono::Duration::hours(1);
            tz.offset_from_local_datetime(&before)
                .earliest()
                .map(|offset| offset.fix().local_minus_utc())
        }
    }
}

/// Splits `HH:MM:SS[.,fraction]` into its parts.
pub fn parse_clock(text: &[u8]) -> Option<(u32, u32, u32, u32)> {
    if text.len() < 8 || text[2] != b':' || text[5] != b':' {
        return None;
    }
    let hour = num(&text[0..2])?;
    let minute = num(&text[3..5])?;
    let second = num(&text[6..8])?;
    let nanos = match text.get(8) {
        None => 0,
        Some(b'.') | Some(b',') => fraction_nanos(&text[9..])?,
        Some(_) => return None,
    };
    Some((hour, minute, second, nanos))
}

/// `10/Oct/2000:13:55:36 -0700`, the Common Log Format time.
pub fn parse_clf(text: &str) -> Option<Timestamp> {
    let b = text.as_bytes();
    if b.len() < 20 || b[2] != b'/' || b[6] != b'/' || b[11] != b':' {
        return None;
    }
    let (hour, minute, second, nanos) = parse_clock(&b[12..20])?;
    let offset = parse_offset(text.get(20..)?.trim_start())?;
    LocalDateTime {
        year: num(&b[7..11])? as i32,
        month: month_from_abbr(text.get(3..6)?)?,
        day: num(&b[0..2])?,
        hour,
        minute,
        second,
        nanos,
    }
    .with_offset(offset)
}

/// `Sun Dec 04 04:47:44 2005` or `Wed Oct 11 14:32:52.123456 2000`, Apache's error-log
/// time, in the configured zone.
pub fn parse_ctime(text: &str, time: &mut TimeContext) -> Option<Timestamp> {
    let mut parts = text.split_ascii_whitespace();
    let _weekday = parts.next()?;
    let month = month_from_abbr(parts.next()?)?;
    let day = num(parts.next()?.as_bytes())?;
    let clock = parse_clock(parts.next()?.as_bytes())?;
    let year = num(parts.next()?.as_bytes())? as i32;
    if parts.next().is_some() {
        return None;
    }
    time.resolve(Some(year), month, day, clock)
}

/// ISO 8601 / RFC 3339: `2003-10-11T22:14:15.003Z`, also with a space for `T`, a comma
/// for the decimal point, or no offset (then the configured zone applies).
pub fn parse_iso8601(text: &str, time: &mut TimeContext) -> Option<Timestamp> {
    let b = text.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b' ' || b[10] == b't')
    {
        return None;
    }
    let clock_end = b[19..]
        .iter()
        .position(|c| !(c.is_ascii_digit() || *c == b'.' || *c == b','))
        .map_or(b.len(), |p| p + 19);
    let (hour, minute, second, nanos) = parse_clock(&b[11..clock_end])?;
    let local = LocalDateTime {
        year: num(&b[0..4])? as i32,
        month: num(&b[5..7])?,
        day: num(&b[8..10])?,
        hour,
        minute,
        second,
        nanos,
    };
    let zone = text[clock_end..].trim_start();
    if zone.is_empty() {
        time.to_utc(&local)
    } else {
        local.with_offset(parse_offset(zone)?)
    }
}

/// Any timestamp shape the built-in formats know, for grok captures named `timestamp`:
/// ISO 8601, `YYYY/MM/DD HH:MM:SS`, Common Log Format, ctime, syslog `Mmm dd HH:MM:SS`,
/// `yyMMdd HHmmss` (Hadoop), and Unix epoch seconds or milliseconds.
pub fn parse_any(text: &str, time: &mut TimeContext) -> Option<Timestamp> {
    let text = text.trim();
    let b = text.as_bytes();
    if b.len() >= 19 && b[4] == b'-' {
        return parse_iso8601(text, time);
    }
    if b.len() >= 19 && (b[4] == b'/' || b[4] == b'.') && (b[7] == b'/' || b[7] == b'.') {
        let clock = parse_clock(&b[11..])?;
        return time.resolve(
            Some(num(&b[0..4])? as i32),
            num(&b[5..7])?,
            num(&b[8..10])?,
            clock,
        );
    }
    if b.len() >= 20 && b.get(2) == Some(&b'/') {
        return parse_clf(text);
    }
    if b.len() == 13 && b[6] == b' ' {
        let (date, clock) = (&b[0..6], &b[7..13]);
        let clock = (
            num(&clock[0..2])?,
            num(&clock[2..4])?,
            num(&clock[4..6])?,
            0,
        );
        let year = 2000 + num(&date[0..2])? as i32;
        return time.resolve(Some(year), num(&date[2..4])?, num(&date[4..6])?, clock);
    }
    if (b.len() == 10 || b.len() == 13) && b.iter().all(u8::is_ascii_digit) {
        let value: i64 = text.parse().ok()?;
        return Some(if b.len() == 10 {
            Timestamp {
                secs: value,
                nanos: 0,
            }
        } else {
            Timestamp {
                secs: value.div_euclid(1000),
                nanos: (value.rem_euclid(1000) as u32) * 1_000_000,
            }
        });
    }
    let mut parts = text.split_ascii_whitespace();
    let first = parts.next()?;
    if let Some(month) = month_from_abbr(first) {
        let day = num(parts.next()?.as_bytes())?;
        let next = parts.next()?;
        let (clock, year) = if next.len() == 4 {
            (parts.next()?, Some(num(next.as_bytes())? as i32))
        } else {
            (next, None)
        };
        let clock = parse_clock(clock.as_bytes())?;
        if parts.next().is_some() {
            return None;
        }
        return time.resolve(year, month, day, clock);
    }
    parse_ctime(text, time)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(zone: &str) -> TimeContext {
        TimeContext::new(
            zone.parse().expect("zone"),
            YearResolver::new((2024, 6, 15)),
        )
    }

    #[test]
    fn civil_round_trip_covers_leap_days_and_centuries() {
        for (y, m, d) in [
            (1970, 1, 1),
            (2000, 2, 29),
            (1900, 3, 1),
            (2024, 2, 29),
            (2100, 12, 31),
            (1969, 12, 31),
        ] {
            assert_eq!(civil_from_days(days_from_civil(y, m, d)), (y, m, d));
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(
            days_from_civil(2000, 3, 1) - days_from_civil(2000, 2, 28),
            2
        );
        assert_eq!(
            days_from_civil(1900, 3, 1) - days_from_civil(1900, 2, 28),
            1
        );
    }

    #[test]
    fn rfc3339_uses_the_fewest_exact_fraction_digits() {
        let ts = |secs, nanos| Timestamp { secs, nanos }.to_rfc3339();
        assert_eq!(ts(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(ts(1_584_132_338, 119_000_000), "2020-03-13T20:45:38.119Z");
        assert_eq!(
            ts(1_612_104_534, 411_655_000),
            "2021-01-31T14:48:54.411655Z"
        );
        assert_eq!(ts(1, 1), "1970-01-01T00:00:01.000000001Z");
        assert_eq!(ts(-1, 0), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn zones_parse_from_names_and_offsets() {
        assert_eq!("UTC".parse::<TimeZone>(), Ok(TimeZone::Utc));
        assert_eq!("+02:00".parse::<TimeZone>(), Ok(TimeZone::Fixed(7200)));
        assert_eq!("-0530".parse::<TimeZone>(), Ok(TimeZone::Fixed(-19800)));
        assert_eq!(
            "Europe/Berlin".parse::<TimeZone>(),
            Ok(TimeZone::Named(chrono_tz::Europe::Berlin))
        );
        assert!("Mars/Olympus".parse::<TimeZone>().is_err());
    }

    #[test]
    fn common_log_time_applies_its_own_offset() {
        let ts = parse_clf("10/Oct/2000:13:55:36 -0700").expect("parses");
        assert_eq!(ts.to_rfc3339(), "2000-10-10T20:55:36Z");
        assert!(parse_clf("10/Foo/2000:13:55:36 -0700").is_none());
        assert!(parse_clf("31/Feb/2000:13:55:36 -0700").is_none());
    }

    #[test]
    fn named_zone_follows_daylight_saving() {
        let mut berlin = ctx("Europe/Berlin");
        let winter = parse_iso8601("2024-01-15 12:00:00", &mut berlin).expect("winter");
        let summer = parse_iso8601("2024-07-15 12:00:00", &mut berlin).expect("summer");
        assert_eq!(winter.to_rfc3339(), "2024-01-15T11:00:00Z");
        assert_eq!(summer.to_rfc3339(), "2024-07-15T10:00:00Z");
        // 02:30 on 31 March 2024 does not exist in Berlin: the pre-change offset applies.
        let gap = parse_iso8601("2024-03-31 02:30:00", &mut berlin).expect("gap");
        assert_eq!(gap.to_rfc3339(), "2024-03-31T01:30:00Z");
        // 02:30 on 27 October 2024 happens twice: the first is taken.
        let repeated = parse_iso8601("2024-10-27 02:30:00", &mut berlin).expect("repeat");
        assert_eq!(repeated.to_rfc3339(), "2024-10-27T00:30:00Z");
    }

    #[test]
    fn explicit_offsets_beat_the_configured_zone() {
        let mut tokyo = ctx("Asia/Tokyo");
        let ts = parse_iso8601("2003-10-11T22:14:15.003+02:00", &mut tokyo).expect("parses");
        assert_eq!(ts.to_rfc3339(), "2003-10-11T20:14:15.003Z");
        let ts = parse_iso8601("2015-07-29 17:41:44,747", &mut tokyo).expect("parses");
        assert_eq!(ts.to_rfc3339(), "2015-07-29T08:41:44.747Z");
    }

    #[test]
    fn year_inference_rolls_over_at_new_year() {
        let mut years = YearResolver::new((2025, 1, 3));
        // December read early in January belongs to last year...
        assert_eq!(years.resolve(12, 30), 2024);
        assert_eq!(years.resolve(12, 31), 2024);
        // ...and the stream carries on into the new one.
        assert_eq!(years.resolve(1, 1), 2025);
        assert_eq!(years.resolve(1, 2), 2025);
        // A late December straggler stays in the old year without moving the stream back.
        assert_eq!(years.resolve(12, 31), 2024);
        assert_eq!(years.resolve(1, 3), 2025);
    }

    #[test]
    fn archive_replayed_mid_year_crosses_new_year_forwards() {
        let mut years = YearResolver::new((2025, 6, 1));
        assert_eq!(years.resolve(11, 30), 2024);
        assert_eq!(years.resolve(12, 31), 2024);
        assert_eq!(years.resolve(1, 1), 2025);
        assert_eq!(years.resolve(3, 1), 2025);
    }

    #[test]
    fn current_month_keeps_current_year() {
        let mut years = YearResolver::new((2025, 6, 15));
        assert_eq!(years.resolve(6, 16), 2025);
        let mut years = YearResolver::new((2025, 6, 15));
        assert_eq!(years.resolve(6, 20), 2024);
    }

    #[test]
    fn february_29_goes_to_a_leap_year() {
        let mut years = YearResolver::new((2025, 3, 10));
        assert_eq!(years.resolve(2, 29), 2024);
        let mut years = YearResolver::new((2024, 3, 10));
        assert_eq!(years.resolve(2, 29), 2024);
    }

    #[test]
    fn parse_any_knows_the_common_shapes() {
        let mut utc = ctx("UTC");
        let cases = [
            ("2015-07-29 17:41:44,747", "2015-07-29T17:41:44.747Z"),
            ("2021/04/01 13:02:31", "2021-04-01T13:02:31Z"),
            ("2005.11.09 12:01:01", "2005-11-09T12:01:01Z"),
            ("10/Oct/2000:13:55:36 -0700", "2000-10-10T20:55:36Z"),
            ("Sun Dec 04 04:47:44 2005", "2005-12-04T04:47:44Z"),
            ("081109 203615", "2008-11-09T20:36:15Z"),
            ("1131566461", "2005-11-09T20:01:01Z"),
            ("1131566461123", "2005-11-09T20:01:01.123Z"),
            ("Jun 14 15:16:01", "2024-06-14T15:16:01Z"),
            ("Jun 14 2019 15:16:01", "2019-06-14T15:16:01Z"),
        ];
        for (text, want) in cases {
            let got = parse_any(text, &mut utc).map(Timestamp::to_rfc3339);
            assert_eq!(got.as_deref(), Some(want), "{text}");
        }
        assert!(parse_any("yesterday", &mut utc).is_none());
    }

    #[test]
    fn impossible_dates_are_rejected() {
        let mut utc = ctx("UTC");
        assert!(parse_iso8601("2023-02-29T00:00:00Z", &mut utc).is_none());
        assert!(parse_iso8601("2024-02-29T00:00:00Z", &mut utc).is_some());
        assert!(parse_iso8601("2024-13-01T00:00:00Z", &mut utc).is_none());
        assert!(parse_iso8601("2024-01-01T24:00:00Z", &mut utc).is_none());
    }
}
