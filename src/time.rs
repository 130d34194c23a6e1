//! Wall-clock time as Cloud writes it: milliseconds since the epoch and ISO-8601 strings in the
//! form of JavaScript's `Date.toISOString()`.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

thread_local! {
    /// How far this thread's gateway clock is set from the host's (tests only).
    static WALL_CLOCK_OFFSET_MS: Cell<i64> = const { Cell::new(0) };
}

/// Milliseconds since the epoch, now, on the gateway's wall clock.
pub fn now_ms() -> u64 {
    system_now_ms().saturating_add_signed(WALL_CLOCK_OFFSET_MS.with(Cell::get))
}

/// The host's clock, never offset: the dev Cloud keeps Cloud's time with it, so a test can set
/// the gateway's clock apart from Cloud's in one process.
pub fn system_now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A test seam: sets the wall clock of the gateway running on this thread `offset_ms` away from
/// the host's (positive: ahead). The monotonic clock is untouched, as on a host whose clock is
/// simply wrong.
#[doc(hidden)]
pub fn set_wall_clock_offset(offset_ms: i64) {
    WALL_CLOCK_OFFSET_MS.with(|offset| offset.set(offset_ms));
}

/// Now as `2026-11-26T10:11:32.966Z`.
pub(crate) fn iso_now() -> String {
    iso(now_ms())
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-11-26T10:11:32.966Z`.
pub fn iso(ms: u64) -> String {
    let seconds = ms / 1000;
    let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
    let rest = seconds % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        ms % 1000
    )
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff]Z` (what Cloud and the gateway send).
pub fn parse_iso(text: &str) -> Option<u64> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut date_parts = date.split('-');
    let year: i64 = date_parts.next()?.parse().ok()?;
    let month: u32 = date_parts.next()?.parse().ok()?;
    let day: u32 = date_parts.next()?.parse().ok()?;
    let (clock, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let mut clock_parts = clock.split(':');
    let hour: u64 = clock_parts.next()?.parse().ok()?;
    let minute: u64 = clock_parts.next()?.parse().ok()?;
    let second: u64 = clock_parts.next()?.parse().ok()?;
    // JavaScript's `Date`, which writes these times, ends in the year 275760; a longer year is no
    // time at all, and would overflow the day arithmetic below.
    if !(0..=275_760).contains(&year)
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let millis: u64 = format!("{fraction:0<3}")[..3].parse().ok()?;
    let days = days_from_civil(year, month, day);
    let seconds = u64::try_from(days).ok()? * 86_400 + hour * 3600 + minute * 60 + second;
    Some(seconds * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_round_trip() {
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(1_795_609_892_966), "2026-11-25T12:31:32.966Z");
        for ms in [0, 951_782_400_000, 1_795_609_892_966, 4_102_444_800_123] {
            assert_eq!(parse_iso(&iso(ms)), Some(ms));
        }
        assert_eq!(parse_iso("2030-01-01T00:00:00Z"), Some(1_893_456_000_000));
        assert_eq!(parse_iso("2030-13-01T00:00:00Z"), None);
        assert_eq!(parse_iso("yesterday"), None);
    }

    /// An input the `retry_after` fuzz target once crashed on: a relay's `Retry-After` date with
    /// an 18-digit year overflowed the day arithmetic of this parser (a panic where overflow is
    /// checked, a wrong wait where not). The same parser reads a relay's `receivedAt` and Cloud's
    /// timestamps.
    #[test]
    fn a_date_with_a_huge_year_is_no_time() {
        assert_eq!(parse_iso("202600000000000000-02-08T12:00:07.000Z"), None);
        assert_eq!(parse_iso("275761-01-01T00:00:00.000Z"), None);
        assert_eq!(parse_iso("275760-01-01T00:00:00.000Z"), Some(8_639_977_881_600_000));
        assert_eq!(parse_iso("2026-11-26T10:11:32.966Z"), Some(1_795_687_892_966));
    }
}
