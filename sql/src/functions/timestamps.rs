//! The time built-ins: `FORMAT_TIMESTAMP(ts, pattern [, zone])` = `TIMESTAMPTOSTRING`,
//! `PARSE_TIMESTAMP(text, pattern [, zone])` → TIMESTAMP, `STRINGTOTIMESTAMP` (the same, →
//! BIGINT), `UNIX_TIMESTAMP(ts)` → BIGINT, `FROM_UNIXTIME(ms)` → TIMESTAMP,
//! `DATETOSTRING(days, pattern)`, `STRINGTODATE(text, pattern)` → INT days,
//! `CONVERT_TZ(ts, from zone, to zone)` and `TIMESTAMPADD(unit, n, ts)` / `TIMESTAMPSUB`, the
//! unit as text (`'SECONDS'`: ksqlDB writes it as a bare keyword, which the parser must turn
//! into text). Patterns are `time.rs`'s.
//!
//! Invariants: no clock (`UNIX_TIMESTAMP()` without an argument, which reads it in ksqlDB, is
//! refused at compile time) and no time zone database: a zone is UTC (`UTC`, `GMT`, `Z`,
//! `Etc/UTC`, …) or a fixed offset (`+02:00`, `UTC-5`); formatting and parsing take UTC only,
//! `CONVERT_TZ` any of them; a named region (`Europe/Paris`) fails the call (NULL) rather than
//! give a time in the wrong zone.

use serde_json::Value;

use super::P::{Int, Str, Ts};
use super::{Args, CheckError, Signature, SqlType, ret, text, values};
use crate::time;

const MS_PER_DAY: i64 = 86_400_000;

pub(super) fn signature(name: &str) -> Option<Signature> {
    Some(match name {
        "FORMAT_TIMESTAMP" | "TIMESTAMPTOSTRING" => {
            Signature::new(2, 3, &[Int, Str, Str], ret::string)
        }
        "PARSE_TIMESTAMP" => Signature::new(2, 3, &[Str, Str, Str], |_| Ok(SqlType::Timestamp)),
        "STRINGTOTIMESTAMP" => Signature::new(2, 3, &[Str, Str, Str], ret::bigint),
        "UNIX_TIMESTAMP" => Signature::new(0, 1, &[Ts], unix_timestamp),
        "FROM_UNIXTIME" => Signature::new(1, 1, &[Int], |_| Ok(SqlType::Timestamp)),
        "CONVERT_TZ" => Signature::new(3, 3, &[Ts, Str, Str], |_| Ok(SqlType::Timestamp)),
        "TIMESTAMPADD" | "TIMESTAMPSUB" => {
            Signature::new(3, 3, &[Str, Int, Ts], |_| Ok(SqlType::Timestamp))
        }
        "DATETOSTRING" => Signature::new(2, 2, &[Int, Str], ret::string),
        "STRINGTODATE" => Signature::new(2, 2, &[Str, Str], ret::int),
        _ => return None,
    })
}

fn unix_timestamp(args: &Args<'_>) -> Result<SqlType, CheckError> {
    if args.len() == 0 {
        return Err(CheckError::Unsupported(
            "without an argument it reads the clock, and eddy's SQL never does (a query must \
             give the same result when replayed); use ROWTIME or UNIX_TIMESTAMP(a TIMESTAMP)"
                .into(),
        ));
    }
    Ok(SqlType::Bigint)
}

pub(super) fn eval(name: &str, args: &[Value]) -> Result<Value, String> {
    let s = |i: usize| args.get(i).map(text).unwrap_or_default();
    let int = |i: usize| {
        args.get(i).and_then(values::int).ok_or_else(|| "the time is not an integer".to_owned())
    };
    let utc = || args.get(2).map_or(Ok(()), |zone| require_utc(&text(zone)));
    Ok(match name {
        "FORMAT_TIMESTAMP" | "TIMESTAMPTOSTRING" => {
            utc()?;
            Value::String(time::format(int(0)?, &s(1))?)
        }
        "PARSE_TIMESTAMP" | "STRINGTOTIMESTAMP" => {
            utc()?;
            Value::from(time::parse(&s(0), &s(1))?)
        }
        // eddy keeps TIMESTAMP as its milliseconds: both are the identity.
        "UNIX_TIMESTAMP" | "FROM_UNIXTIME" => Value::from(int(0)?),
        "DATETOSTRING" => {
            let ms = int(0)?.checked_mul(MS_PER_DAY).ok_or("the date is out of range")?;
            Value::String(time::format(ms, &s(1))?)
        }
        "STRINGTODATE" => Value::from(time::parse(&s(0), &s(1))?.div_euclid(MS_PER_DAY)),
        "TIMESTAMPADD" | "TIMESTAMPSUB" => {
            let ms = unit_ms(&s(0))?.checked_mul(int(1)?).ok_or("the interval is out of range")?;
            let ms = if name == "TIMESTAMPSUB" { ms.checked_neg() } else { Some(ms) };
            let moved = ms.and_then(|ms| int(2).ok()?.checked_add(ms));
            Value::from(moved.ok_or("the timestamp is out of range")?)
        }
        // The wall-clock time in `from` shown as the same instant's in `to`.
        "CONVERT_TZ" => {
            let shift = zone_offset_ms(&s(2))? - zone_offset_ms(&s(1))?;
            Value::from(int(0)?.checked_add(shift).ok_or("the timestamp is out of range")?)
        }
        _ => return Err("not a time function".into()),
    })
}

/// Milliseconds in a time unit of ksqlDB's grammar (`SECOND` or `SECONDS`, any case).
fn unit_ms(unit: &str) -> Result<i64, String> {
    let unit = unit.to_ascii_uppercase();
    Ok(match unit.strip_suffix('S').unwrap_or(&unit) {
        "MILLISECOND" => 1,
        "SECOND" => 1000,
        "MINUTE" => 60_000,
        "HOUR" => 3_600_000,
        "DAY" => MS_PER_DAY,
        _ => {
            return Err(format!(
                "unknown time unit {unit}: use DAYS, HOURS, MINUTES, SECONDS or MILLISECONDS"
            ));
        }
    })
}

/// The offset of a zone from UTC in milliseconds, for the zones that need no time zone
/// database: the names Java's `ZoneId.of` reads as UTC (`UTC`, `GMT`, `Z`, `Etc/UTC`, …) and
/// fixed offsets (`+2`, `+02`, `-0530`, `+05:30`, `+05:30:15`, `UTC+1`, `GMT-03:00`).
fn zone_offset_ms(zone: &str) -> Result<i64, String> {
    const UTC: [&str; 18] = [
        "Z",
        "UTC",
        "GMT",
        "UT",
        "UCT",
        "GMT0",
        "Zulu",
        "Universal",
        "Greenwich",
        "Etc/UTC",
        "Etc/GMT",
        "Etc/UCT",
        "Etc/GMT0",
        "Etc/GMT+0",
        "Etc/GMT-0",
        "Etc/Zulu",
        "Etc/Universal",
        "Etc/Greenwich",
    ];
    if UTC.contains(&zone) {
        return Ok(0);
    }
    let offset = ["UTC", "GMT", "UT"]
        .iter()
        .find_map(|p| zone.strip_prefix(p))
        .filter(|rest| rest.starts_with(['+', '-']))
        .unwrap_or(zone);
    fixed_offset_ms(offset).ok_or_else(|| {
        format!(
            "time zone {zone:?}: eddy has no time zone database; use UTC or a fixed offset such \
             as +02:00"
        )
    })
}

/// `±h`, `±hh`, `±hhmm`, `±hh:mm`, `±hhmmss` or `±hh:mm:ss`, at most 18 hours.
fn fixed_offset_ms(s: &str) -> Option<i64> {
    let sign = match s.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let rest = &s[1..];
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    let colons = rest.len() - digits.len();
    let well_formed = digits.bytes().all(|b| b.is_ascii_digit())
        && match digits.len() {
            1 | 2 => colons == 0,
            4 => colons == 0 || rest.as_bytes().get(2) == Some(&b':') && colons == 1,
            6 => colons == 0 || (rest.get(2..3) == Some(":") && rest.get(5..6) == Some(":")),
            _ => false,
        };
    if !well_formed {
        return None;
    }
    let field = |i: usize| digits.get(i..i + 2).and_then(|d| d.parse::<i64>().ok()).unwrap_or(0);
    let (h, m, sec) = if digits.len() <= 2 {
        (digits.parse::<i64>().ok()?, 0, 0)
    } else {
        (field(0), field(2), field(4))
    };
    let seconds = h * 3600 + m * 60 + sec;
    (h <= 18 && m < 60 && sec < 60 && seconds <= 18 * 3600).then_some(sign * seconds * 1000)
}

/// Fails for a zone that is not UTC (formatting and parsing know no other).
fn require_utc(zone: &str) -> Result<(), String> {
    match zone_offset_ms(zone)? {
        0 => Ok(()),
        _ => Err(format!("time zone {zone:?}: formatting and parsing support only UTC")),
    }
}

#[cfg(test)]
mod tests {
    // The shared dispatch: what a query's call reaches.
    use crate::functions::evaluate as call;
    use serde_json::json;

    use super::*;

    fn f(name: &str, args: &[Value]) -> Result<Value, String> {
        call(name, args).expect("known")
    }

    #[test]
    fn formats_and_parses_in_utc() {
        let day = json!(86_400_000 + 3_661_000);
        let formatted = f("FORMAT_TIMESTAMP", &[day.clone(), json!("yyyy-MM-dd HH:mm:ss")]);
        assert_eq!(formatted, Ok(json!("1970-01-02 01:01:01")));
        let pattern = json!("yyyy-MM-dd HH:mm:ss");
        let parsed = f("PARSE_TIMESTAMP", &[json!("1970-01-02 01:01:01"), pattern, json!("UTC")]);
        assert_eq!(parsed, Ok(day));
    }

    #[test]
    fn a_zone_other_than_utc_fails_rather_than_mislead() {
        let args = [json!(0), json!("HH"), json!("America/New_York")];
        assert!(f("TIMESTAMPTOSTRING", &args).is_err());
        for zone in ["UTC", "GMT", "Z", "Etc/UTC", "+00:00", "UTC+0", "GMT-00:00"] {
            assert_eq!(require_utc(zone), Ok(()), "{zone}");
        }
        for zone in ["+01:00", "CET", "utc", "UTC+1", ""] {
            assert!(require_utc(zone).is_err(), "{zone}");
        }
    }

    #[test]
    fn fixed_offsets_are_read_as_java_reads_them() {
        let hour = 3_600_000;
        assert_eq!(zone_offset_ms("+2"), Ok(2 * hour));
        assert_eq!(zone_offset_ms("-0530"), Ok(-(5 * hour + 30 * 60_000)));
        assert_eq!(zone_offset_ms("+05:30:15"), Ok(5 * hour + 30 * 60_000 + 15_000));
        assert_eq!(zone_offset_ms("GMT-03:00"), Ok(-3 * hour));
        assert_eq!(zone_offset_ms("Etc/UTC"), Ok(0));
        for bad in ["+19", "+0560", "+5:30", "+123", "Europe/Paris", "UTC+", "2"] {
            assert!(zone_offset_ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timestampadd_and_sub_move_by_whole_units() {
        assert_eq!(
            f("TIMESTAMPADD", &[json!("MILLISECONDS"), json!(10), json!(10)]),
            Ok(json!(20))
        );
        assert_eq!(f("TIMESTAMPADD", &[json!("day"), json!(-1), json!(0)]), Ok(json!(-MS_PER_DAY)));
        assert_eq!(f("TIMESTAMPSUB", &[json!("HOURS"), json!(2), json!(7_200_000)]), Ok(json!(0)));
        assert!(f("TIMESTAMPADD", &[json!("WEEKS"), json!(1), json!(0)]).is_err());
    }

    #[test]
    fn convert_tz_shifts_by_the_difference_of_offsets() {
        let args = [json!(100), json!("+0200"), json!("+0500")];
        assert_eq!(f("CONVERT_TZ", &args), Ok(json!(10_800_100)));
        assert!(
            f("CONVERT_TZ", &[json!(100), json!("America/Los_Angeles"), json!("UTC")]).is_err()
        );
    }

    #[test]
    fn unix_timestamp_and_from_unixtime_keep_the_milliseconds() {
        assert_eq!(
            f("UNIX_TIMESTAMP", &[json!(1_589_234_313_000_i64)]),
            Ok(json!(1_589_234_313_000_i64))
        );
        assert_eq!(f("FROM_UNIXTIME", &[json!(100)]), Ok(json!(100)));
    }

    #[test]
    fn dates_are_days_since_the_epoch() {
        assert_eq!(
            f("DATETOSTRING", &[json!(17_662), json!("yyyy-MM-dd")]),
            Ok(json!("2018-05-11"))
        );
        assert_eq!(f("DATETOSTRING", &[json!(-1), json!("dd-MM-yyyy")]), Ok(json!("31-12-1969")));
        assert_eq!(
            f("STRINGTODATE", &[json!("11/05/2019"), json!("dd/MM/yyyy")]),
            Ok(json!(18_027))
        );
        assert!(f("STRINGTODATE", &[json!("nope"), json!("dd/MM/yyyy")]).is_err());
    }
}
