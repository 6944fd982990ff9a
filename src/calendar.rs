//! Civil time without allocation: the Kaggle timestamp format, month indices counted from
//! 2009-01 (the first month of the Kaggle span) and America/New_York wall-clock time.
//!
//! New York local time follows the US rules in force since 1987 (the 2007 change included);
//! a unit test checks them against the IANA database. Fare rules are stated in local time, so
//! features and the generator both go through [`NyClock`].

/// Seconds in a day.
pub const DAY: i64 = 86_400;
/// The year month index 0 belongs to.
pub const EPOCH_YEAR: i32 = 2009;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
#[must_use]
pub fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `(year, month, day)` of a day count since 1970-01-01.
#[must_use]
pub fn civil_from_days(z: i64) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = (yoe + era * 400 + i64::from(m <= 2)) as i32;
    (y, m, d)
}

/// Day of week of a day count, 0 = Monday … 6 = Sunday.
#[must_use]
pub fn weekday(days: i64) -> u32 {
    // 1970-01-01 was a Thursday.
    ((days + 3).rem_euclid(7)) as u32
}

/// Unix seconds of `YYYY-MM-DD HH:MM:SS` UTC.
#[must_use]
pub fn timestamp(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
    days_from_civil(y, mo, d) * DAY + i64::from(h * 3600 + mi * 60 + s)
}

fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0')))
}

/// Parses `YYYY-MM-DD HH:MM:SS` optionally followed by ` UTC` (the Kaggle format), or with a
/// `T` separator, into Unix seconds; the year in [`YEARS`]. `None` for anything else.
#[must_use]
pub fn parse_datetime(b: &[u8]) -> Option<i64> {
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b' ' || b[10] == b'T') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let rest = &b[19..];
    if !(rest.is_empty() || rest == b" UTC" || rest == b"Z" || rest == b"+00:00") {
        return None;
    }
    let (y, mo, d) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    let (h, mi, s) = (digits(&b[11..13])?, digits(&b[14..16])?, digits(&b[17..19])?);
    if !YEARS.contains(&y) || !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y as i32, mo) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    Some(timestamp(y as i32, mo, d, h, mi, s))
}

/// Appends `YYYY-MM-DD HH:MM:SS UTC` to `out`.
pub fn format_datetime(ts: i64, out: &mut String) {
    use std::fmt::Write;
    let (y, m, d) = civil_from_days(ts.div_euclid(DAY));
    let sod = ts.rem_euclid(DAY);
    // Writing into a String cannot fail.
    let _ = write!(out, "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", sod / 3600, sod / 60 % 60, sod % 60);
}

/// Number of days in a month.
#[must_use]
pub fn days_in_month(y: i32, m: u32) -> u32 {
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    (days_from_civil(ny, nm, 1) - days_from_civil(y, m, 1)) as u32
}

/// A calendar month, ordered in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    /// Year, e.g. 2012.
    pub year: i32,
    /// Month of the year, 1..=12.
    pub month: u32,
}

impl Month {
    /// Months since 2009-01 (negative before).
    #[must_use]
    pub fn index(self) -> i32 {
        (self.year - EPOCH_YEAR) * 12 + self.month as i32 - 1
    }

    /// The month with a given index since 2009-01.
    #[must_use]
    pub fn from_index(i: i32) -> Self {
        Self { year: EPOCH_YEAR + i.div_euclid(12), month: (i.rem_euclid(12) + 1) as u32 }
    }

    /// The month following this one.
    #[must_use]
    pub fn next(self) -> Self {
        Self::from_index(self.index() + 1)
    }

    /// Unix seconds of the first instant of the month, UTC.
    #[must_use]
    pub fn start(self) -> i64 {
        timestamp(self.year, self.month, 1, 0, 0, 0)
    }

    /// Parses `YYYY-MM`.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 7 || b[4] != b'-' {
            return None;
        }
        let (year, month) = (digits(&b[..4])? as i32, digits(&b[5..])?);
        (1..=12).contains(&month).then_some(Self { year, month })
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// Months since 2009-01 of a UTC instant.
#[must_use]
pub fn month_index_of(ts: i64) -> i32 {
    let (y, m, _) = civil_from_days(ts.div_euclid(DAY));
    Month { year: y, month: m }.index()
}

/// A New York daylight-saving rule: from the `start.1`th Sunday of month `start.0` at 02:00
/// standard time to the `end.1`th (0: the last) Sunday of month `end.0` at 02:00 daylight time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DstRule {
    /// (month, nth Sunday) DST starts.
    pub start: (u32, u32),
    /// (month, nth Sunday, 0 = last) DST ends.
    pub end: (u32, u32),
}

/// The US rule of 1987–2006 (first Sunday of April to last Sunday of October).
pub const DST_1987: DstRule = DstRule { start: (4, 1), end: (10, 0) };
/// The US rule since 2007 (second Sunday of March to first Sunday of November).
pub const DST_2007: DstRule = DstRule { start: (3, 2), end: (11, 1) };
/// The first year of [`DST_2007`]; earlier years get [`DST_1987`] (the rides start in 2009).
pub const DST_2007_FROM: i32 = 2007;
/// 02:00 standard time is 07:00 UTC; 02:00 daylight time is 06:00 UTC.
pub const DST_START_UTC_HOUR: u32 = 7;
/// See [`DST_START_UTC_HOUR`].
pub const DST_END_UTC_HOUR: u32 = 6;

/// The rule of a (UTC) year.
#[must_use]
pub const fn dst_rule(year: i32) -> DstRule {
    if year >= DST_2007_FROM { DST_2007 } else { DST_1987 }
}

/// Pickup years the parser accepts: BigQuery's TIMESTAMP range (years 1–9999) with room for
/// the New York offset and a leap second, so that both back ends keep the same rows.
pub const YEARS: std::ops::RangeInclusive<u32> = 2..=9998;

/// The day (1-based) of the `n`th Sunday of a month, or of the last one when `n == 0`.
fn sunday(y: i32, m: u32, n: u32) -> u32 {
    let first = days_from_civil(y, m, 1);
    let first_sunday = 1 + (6 - weekday(first)) % 7;
    if n == 0 {
        let dim = days_in_month(y, m);
        first_sunday + (dim - first_sunday) / 7 * 7
    } else {
        first_sunday + 7 * (n - 1)
    }
}

/// Converts UTC instants to New York wall-clock time, caching the DST bounds of one year and
/// the local day of the last instant, so that a stream of rides in time order costs two
/// comparisons and a subtraction each.
#[derive(Clone, Debug, Default)]
pub struct NyClock {
    year: i32,
    dst_start: i64,
    dst_end: i64,
    /// UTC instants `[lo, hi)` sharing the local date and the offset of `day`.
    span: (i64, i64),
    /// The UTC instant at which the cached local day began (under its offset).
    midnight: i64,
    /// The cached local day (its `second_of_day` unused).
    day: Option<LocalTime>,
}

/// New York wall-clock fields of an instant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LocalTime {
    /// Seconds since the local midnight.
    pub second_of_day: i64,
    /// 0 = Monday … 6 = Sunday.
    pub weekday: u32,
    /// Month of the year, 1..=12.
    pub month: u32,
    /// Local year.
    pub year: i32,
}

impl NyClock {
    /// The UTC offset in seconds at an instant (−5 h or −4 h).
    pub fn offset(&mut self, ts: i64) -> i64 {
        let (y, _, _) = civil_from_days(ts.div_euclid(DAY));
        if y != self.year || self.dst_start == 0 {
            self.year = y;
            let DstRule { start: (sm, sn), end: (em, en) } = dst_rule(y);
            self.dst_start = timestamp(y, sm, sunday(y, sm, sn), DST_START_UTC_HOUR, 0, 0);
            self.dst_end = timestamp(y, em, sunday(y, em, en), DST_END_UTC_HOUR, 0, 0);
        }
        if ts >= self.dst_start && ts < self.dst_end { -4 * 3600 } else { -5 * 3600 }
    }

    /// Wall-clock fields of an instant in New York.
    pub fn local(&mut self, ts: i64) -> LocalTime {
        if let Some(day) = self.day.filter(|_| ts >= self.span.0 && ts < self.span.1) {
            return LocalTime { second_of_day: ts - self.midnight, ..day };
        }
        let offset = self.offset(ts);
        let lt = ts + offset;
        let days = lt.div_euclid(DAY);
        let (year, month, _) = civil_from_days(days);
        let local = LocalTime { second_of_day: lt.rem_euclid(DAY), weekday: weekday(days), month, year };
        // The offset holds from the UTC year's start to DST, during DST, and from its end to
        // the next UTC year (where `offset` reloads the bounds).
        let (lo, hi) = if ts < self.dst_start {
            (timestamp(self.year, 1, 1, 0, 0, 0), self.dst_start)
        } else if ts < self.dst_end {
            (self.dst_start, self.dst_end)
        } else {
            (self.dst_end, timestamp(self.year + 1, 1, 1, 0, 0, 0))
        };
        self.midnight = days * DAY - offset;
        self.span = (lo.max(self.midnight), hi.min(self.midnight + DAY));
        self.day = Some(local);
        local
    }
}

/// Months since 2009-01 of UTC instants, remembering the bounds of the last month so that a
/// stream in time order costs two comparisons each. Same values as [`month_index_of`].
#[derive(Clone, Debug, Default)]
pub struct MonthIndexCache {
    /// UTC instants `[lo, hi)` of the cached month, empty at first.
    span: (i64, i64),
    index: i32,
}

impl MonthIndexCache {
    /// Months since 2009-01 of the UTC instant `ts`.
    pub fn of(&mut self, ts: i64) -> i32 {
        if ts < self.span.0 || ts >= self.span.1 {
            self.index = month_index_of(ts);
            let m = Month::from_index(self.index);
            self.span = (m.start(), m.next().start());
        }
        self.index
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Offset, TimeZone};

    #[test]
    fn years_are_bigquerys_with_room_for_the_offset() {
        assert_eq!(parse_datetime(b"0001-06-01 00:00:00"), None);
        assert_eq!(parse_datetime(b"0000-06-01 00:00:00 UTC"), None);
        assert_eq!(parse_datetime(b"9999-01-01 00:00:00"), None);
        assert_eq!(parse_datetime(b"0002-01-01 00:00:00"), Some(timestamp(2, 1, 1, 0, 0, 0)));
        assert_eq!(parse_datetime(b"9998-12-31 23:59:60"), Some(timestamp(9999, 1, 1, 0, 0, 0)));
    }

    #[test]
    fn civil_round_trip() {
        for z in (-1000..40_000).step_by(7) {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(weekday(days_from_civil(2012, 9, 4)), 1, "2012-09-04 was a Tuesday");
    }

    #[test]
    fn parses_kaggle_format() {
        let ts = parse_datetime(b"2012-10-15 13:05:01 UTC").unwrap();
        let mut s = String::new();
        format_datetime(ts, &mut s);
        assert_eq!(s, "2012-10-15 13:05:01 UTC");
        assert_eq!(parse_datetime(b"2012-02-30 00:00:00 UTC"), None);
        assert_eq!(parse_datetime(b"garbage"), None);
        assert_eq!(parse_datetime(b"2012-10-15 13:05:01 CET"), None);
    }

    #[test]
    fn months() {
        let m = Month::parse("2012-09").unwrap();
        assert_eq!(m.index(), 44);
        assert_eq!(Month::from_index(44), m);
        assert_eq!(Month::parse("2012-12").unwrap().next().to_string(), "2013-01");
        assert_eq!(month_index_of(timestamp(2015, 6, 30, 23, 59, 59)), 77);
    }

    #[test]
    fn cached_local_time_and_month_equal_the_direct_computation() {
        fn direct(ts: i64) -> LocalTime {
            let lt = ts + NyClock::default().offset(ts);
            let days = lt.div_euclid(DAY);
            let (year, month, _) = civil_from_days(days);
            LocalTime { second_of_day: lt.rem_euclid(DAY), weekday: weekday(days), month, year }
        }
        let (mut clock, mut months) = (NyClock::default(), MonthIndexCache::default());
        let mut check = |ts: i64| {
            assert_eq!(clock.local(ts), direct(ts), "at {ts}");
            assert_eq!(months.of(ts), month_index_of(ts), "at {ts}");
        };
        // Forwards in small steps (the cache hits), across DST changes and new years, then
        // seconds around every transition, then jumps back and forth (the cache misses).
        let mut ts = timestamp(2006, 12, 30, 0, 0, 0);
        while ts < timestamp(2013, 1, 2, 0, 0, 0) {
            check(ts);
            ts += 599;
        }
        for y in 2005..2016 {
            for (m, d) in [(1, 1), (3, 1), (4, 1), (10, 20), (11, 1), (12, 31)] {
                let day = timestamp(y, m, d, 0, 0, 0);
                for s in (-DAY..3 * DAY).step_by(1800) {
                    for e in [-1, 0, 1] {
                        check(day + s + e);
                    }
                }
            }
        }
        let mut rng = crate::generator::rng::Rng::new(8, 0);
        for _ in 0..100_000 {
            check(timestamp(1990, 1, 1, 0, 0, 0) + rng.below(40 * 365 * DAY as u64) as i64);
        }
    }

    #[test]
    fn new_york_offsets_match_iana() {
        let tz = chrono_tz::America::New_York;
        let mut clock = NyClock::default();
        // Every 37 minutes over 1990..2016 covers both rule sets and every transition hour.
        let mut ts = timestamp(1990, 1, 1, 0, 0, 0);
        while ts < timestamp(2016, 1, 1, 0, 0, 0) {
            let want = tz.offset_from_utc_datetime(&chrono::DateTime::from_timestamp(ts, 0).unwrap().naive_utc());
            assert_eq!(clock.offset(ts), i64::from(want.fix().local_minus_utc()), "at {ts}");
            ts += 37 * 60;
        }
    }
}
