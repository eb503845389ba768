//! Calendar maths: days since the Unix epoch ↔ proleptic Gregorian (year, month, day), after
//! Howard Hinnant's `days_from_civil` / `civil_from_days`.
//!
//! A leaf module with no state and no clock: the timestamp functions of eddy-sql, the
//! broker's spec values and the sample access log all convert dates with it, so they agree.
//! Invariants: over every day an `i64` millisecond timestamp can reach, the two are exact
//! inverses of each other; day 0 is 1970-01-01; months are 1–12 and days 1–31; dates before
//! the epoch are negative days (floor division, so no off-by-one below zero).

/// Days since 1970-01-01 of the date `y`-`m`-`d` (month 1–12, day 1–31).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 → (year, month 1–12, day): the inverse of [`days_from_civil`].
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates_and_round_trips() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2023, 10, 10), 19_640);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(civil_from_days(19_640), (2023, 10, 10));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        // 2000 is a leap year, 1900 is not.
        assert_eq!(civil_from_days(days_from_civil(2000, 2, 28) + 1), (2000, 2, 29));
        assert_eq!(civil_from_days(days_from_civil(1900, 2, 28) + 1), (1900, 3, 1));
        for day in (-800_000..800_000).step_by(97) {
            let (y, m, d) = civil_from_days(day);
            assert!((1..=12).contains(&m) && (1..=31).contains(&d), "{day}");
            assert_eq!(days_from_civil(y, m, d), day);
        }
    }
}
