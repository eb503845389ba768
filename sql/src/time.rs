//! `FORMAT_TIMESTAMP` / `PARSE_TIMESTAMP` patterns: a small subset of Java's
//! `DateTimeFormatter`, always in UTC.
//!
//! | letters | meaning |
//! |---|---|
//! | `yyyy` | year, 4 digits |
//! | `MM` / `MMM` | month 01–12 / Jan–Dec |
//! | `dd` | day of month 01–31 |
//! | `HH` | hour 00–23 |
//! | `mm` / `ss` / `SSS` | minute / second / millisecond |
//! | `Z` | zone offset `+hhmm` (parsing honours it; formatting prints `+0000`) |
//! | `'text'` | literal text (`''` is a quote); other non-letters are literal |
//!
//! Invariants: no clock and no time zone database — dates come from eddy-processor's
//! `calendar`, so SQL, the broker's specs and the sample data agree on every day; a pattern
//! letter outside the table is an error, never a guess; parsing consumes the whole text or
//! fails.

use eddy_processor::calendar::{civil_from_days, days_from_civil};

const MONTHS: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

#[derive(Debug, PartialEq)]
enum Part {
    Field(char, usize),
    Lit(String),
}

fn compile(pattern: &str) -> Result<Vec<Part>, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            let mut lit = String::new();
            i += 1;
            while i < chars.len() {
                if chars[i] == '\'' {
                    if chars.get(i + 1) == Some(&'\'') {
                        lit.push('\'');
                        i += 2;
                        continue;
                    }
                    break;
                }
                lit.push(chars[i]);
                i += 1;
            }
            i += 1;
            parts.push(Part::Lit(if lit.is_empty() { "'".into() } else { lit }));
        } else if c.is_ascii_alphabetic() {
            let n = chars[i..].iter().take_while(|x| **x == c).count();
            if !matches!((c, n), ('y', 4) | ('M', 2 | 3) | ('d' | 'H' | 'm' | 's', 2) | ('S', 3))
                && !matches!(c, 'Z' | 'X')
            {
                return Err(format!(
                    "pattern letters {:?} are not supported (use yyyy MM MMM dd HH mm ss SSS Z)",
                    c.to_string().repeat(n)
                ));
            }
            parts.push(Part::Field(c, n));
            i += n;
        } else {
            parts.push(Part::Lit(c.to_string()));
            i += 1;
        }
    }
    Ok(parts)
}

/// Formats `ms` since the epoch in UTC.
pub fn format(ms: i64, pattern: &str) -> Result<String, String> {
    let (days, in_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, mo, d) = civil_from_days(days);
    let mut out = String::new();
    for part in compile(pattern)? {
        match part {
            Part::Lit(s) => out.push_str(&s),
            Part::Field('y', _) => out.push_str(&format!("{y:04}")),
            Part::Field('M', 3) => out.push_str(MONTHS[(mo - 1) as usize]),
            Part::Field('M', _) => out.push_str(&format!("{mo:02}")),
            Part::Field('d', _) => out.push_str(&format!("{d:02}")),
            Part::Field('H', _) => out.push_str(&format!("{:02}", in_day / 3_600_000)),
            Part::Field('m', _) => out.push_str(&format!("{:02}", in_day / 60_000 % 60)),
            Part::Field('s', _) => out.push_str(&format!("{:02}", in_day / 1000 % 60)),
            Part::Field('S', _) => out.push_str(&format!("{:03}", in_day % 1000)),
            Part::Field(_, _) => out.push_str("+0000"),
        }
    }
    Ok(out)
}

/// Parses `text` by `pattern` into ms since the epoch (UTC unless the text has a `Z` offset).
pub fn parse(text: &str, pattern: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} does not match the pattern {pattern:?}");
    let (mut y, mut mo, mut d, mut h, mut mi, mut s, mut ms, mut zone) =
        (1970, 1, 1, 0, 0, 0, 0, 0);
    let mut rest = text;
    for part in compile(pattern)? {
        match part {
            Part::Lit(l) => rest = rest.strip_prefix(l.as_str()).ok_or_else(bad)?,
            Part::Field('M', 3) => {
                let i = MONTHS.iter().position(|m| rest.starts_with(m)).ok_or_else(bad)?;
                mo = i as i64 + 1;
                rest = &rest[3..];
            }
            Part::Field('Z' | 'X', _) => {
                let sign = match rest.as_bytes().first() {
                    Some(b'+') => 1,
                    Some(b'-') => -1,
                    Some(b'Z') => {
                        rest = &rest[1..];
                        continue;
                    }
                    _ => return Err(bad()),
                };
                let digits: String = rest[1..].chars().filter(|c| *c != ':').take(4).collect();
                let hh: i64 = digits.get(0..2).and_then(|x| x.parse().ok()).ok_or_else(bad)?;
                let mm: i64 = digits.get(2..4).and_then(|x| x.parse().ok()).ok_or_else(bad)?;
                zone = sign * (hh * 60 + mm);
                let used = if rest.get(3..4) == Some(":") { 6 } else { 5 };
                rest = rest.get(used..).ok_or_else(bad)?;
            }
            Part::Field(c, n) => {
                let digits = rest.get(..n).filter(|x| x.bytes().all(|b| b.is_ascii_digit()));
                let v: i64 = digits.and_then(|x| x.parse().ok()).ok_or_else(bad)?;
                rest = &rest[n..];
                match c {
                    'y' => y = v,
                    'M' => mo = v,
                    'd' => d = v,
                    'H' => h = v,
                    'm' => mi = v,
                    's' => s = v,
                    _ => ms = v,
                }
            }
        }
    }
    if !rest.is_empty() || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let days = days_from_civil(y, mo, d);
    Ok(((days * 24 + h) * 60 + mi - zone) * 60_000 + s * 1000 + ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_and_parse_round_trip() {
        let t = 1_696_968_000_123; // 2023-10-10 20:00:00.123 UTC
        assert_eq!(format(t, "yyyy-MM-dd HH:mm:ss.SSS").unwrap(), "2023-10-10 20:00:00.123");
        assert_eq!(format(t, "dd/MMM/yyyy:HH").unwrap(), "10/Oct/2023:20");
        assert_eq!(format(t, "yyyy-MM-dd'T'HH:mm:ssZ").unwrap(), "2023-10-10T20:00:00+0000");
        assert_eq!(parse("2023-10-10 20:00:00.123", "yyyy-MM-dd HH:mm:ss.SSS").unwrap(), t);
        assert_eq!(parse("10/Oct/2023:13:00:00 -0700", "dd/MMM/yyyy:HH:mm:ss Z").unwrap(), t - 123);
        assert!(parse("2023-13-10", "yyyy-MM-dd").is_err());
        assert!(format(t, "EEE").is_err());
    }
}
