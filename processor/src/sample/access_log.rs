//! An nginx "combined" access log generator with Zipf-like URL popularity, and the parsing of
//! its lines. Shared by the access-log tests, `examples/access_log.rs` and eddy-bench's
//! `processor` workload, so all of them count the same lines.
//!
//! The output is a function of `(lines, hours, seed)` only: no clock, no global RNG.

use std::io::Write;

use crate::calendar::{civil_from_days, days_from_civil};

/// Day-of-month, month name, year; hour, minute, second; then the UTC offset.
const MONTHS: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// Log start: 10 Oct 2023 13:00:00 in UTC-7, as ms since the epoch.
pub const START_MS: i64 = 1_696_968_000_000;
const OFFSET_MIN: i64 = -7 * 60;

struct Rng(u64);
impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Writes `lines` log lines spanning about `hours` hours. URL popularity follows a Zipf law
/// (exponent 1.1 over 20,000 URLs); timestamps grow with small jitter, so lines are slightly
/// out of order as in a real log (written when the response completes).
pub fn generate(out: &mut impl Write, lines: u64, hours: i64, seed: u64) -> std::io::Result<()> {
    let mut rng = Rng(seed);
    let urls = url_table(20_000);
    let cumulative = zipf_cumulative(urls.len(), 1.1);
    let span_ms = hours * 3_600_000;
    let agents = [
        "Mozilla/5.0 (X11; Linux x86_64; rv:118.0) Gecko/20100101 Firefox/118.0",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 Safari/605.1.15",
        "curl/8.4.0",
        "Googlebot/2.1 (+http://www.google.com/bot.html)",
    ];
    let mut buf = String::with_capacity(256);
    for i in 0..lines {
        let base = START_MS + (span_ms as i128 * i as i128 / lines.max(1) as i128) as i64;
        let ts = base - rng.below(3_000) as i64;
        let u = rng.unit();
        let url = &urls[cumulative.partition_point(|&c| c < u).min(urls.len() - 1)];
        let status = match rng.below(100) {
            0..=89 => 200,
            90..=94 => 304,
            95..=97 => 404,
            _ => 500,
        };
        let ip = format!(
            "{}.{}.{}.{}",
            10 + rng.below(200),
            rng.below(256),
            rng.below(256),
            1 + rng.below(254)
        );
        buf.clear();
        use std::fmt::Write as _;
        let _ = writeln!(
            buf,
            "{ip} - - [{}] \"GET {url} HTTP/1.1\" {status} {} \"-\" \"{}\"",
            format_time(ts),
            200 + rng.below(50_000),
            agents[rng.below(agents.len() as u64) as usize]
        );
        out.write_all(buf.as_bytes())?;
    }
    Ok(())
}

fn url_table(n: usize) -> Vec<String> {
    let sections = ["", "/blog", "/docs", "/api/v1", "/static/img", "/products"];
    (0..n)
        .map(|i| match i {
            0 => "/".to_owned(),
            1 => "/index.html".to_owned(),
            2 => "/favicon.ico".to_owned(),
            _ => format!("{}/page-{i}.html", sections[i % sections.len()]),
        })
        .collect()
}

fn zipf_cumulative(n: usize, s: f64) -> Vec<f64> {
    let weights: Vec<f64> = (1..=n).map(|k| 1.0 / (k as f64).powf(s)).collect();
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    weights
        .iter()
        .map(|w| {
            acc += w / total;
            acc
        })
        .collect()
}

/// `10/Oct/2023:13:55:36 -0700` for `ms` since the epoch, in UTC-7.
pub fn format_time(ms: i64) -> String {
    let local = ms.div_euclid(1000) + OFFSET_MIN * 60;
    let (days, secs) = (local.div_euclid(86_400), local.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{d:02}/{}/{y}:{:02}:{:02}:{:02} -0700",
        MONTHS[(m - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Field 7 (awk's `$7`) of a line: the request path.
pub fn url_of(line: &str) -> Option<&str> {
    line.split_whitespace().nth(6)
}

/// The event time of a line, from its `[10/Oct/2000:13:55:36 -0700]` field, in ms.
pub fn time_of(line: &str) -> Option<i64> {
    let start = line.find('[')? + 1;
    let end = start + line[start..].find(']')?;
    let field = &line[start..end];
    let (date, zone) = field.split_once(' ')?;
    let mut parts = date.split(&['/', ':'][..]);
    let day: i64 = parts.next()?.parse().ok()?;
    let month_name = parts.next()?;
    let month = MONTHS.iter().position(|m| *m == month_name)? as i64 + 1;
    let year: i64 = parts.next()?.parse().ok()?;
    let hour: i64 = parts.next()?.parse().ok()?;
    let minute: i64 = parts.next()?.parse().ok()?;
    let second: i64 = parts.next()?.parse().ok()?;
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let zone: i64 = zone.get(1..)?.parse().ok()?;
    let offset_s = sign * (zone / 100 * 3600 + zone % 100 * 60);
    let local = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    Some((local - offset_s) * 1000)
}
