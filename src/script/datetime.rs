//! Dates for the Entra date functions (CDate, DateAdd, DateDiff, DateFromNum,
//! FormatDateTime, Now, NumFromDate).
//!
//! Entra passes DateTimes around as UTC strings in .NET's `M/d/yyyy h:mm:ss tt`
//! format; scripts do the same, so a value from `cdate` can be stored, compared or
//! fed to `date_add`. Parsing accepts ISO 8601 (with or without time, offset or `Z`),
//! that Entra format, and .NET custom format strings for `format_date_time`.

use crate::clock::{civil_from_days, days_from_civil};

/// A UTC instant with sub-second precision in 100 ns ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instant {
    pub secs: i64,
    pub ticks: u32,
}

/// Broken-down fields of a parsed date (local to `offset`).
#[derive(Debug, Clone, Copy, Default)]
struct Fields {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    ticks: u32,
    /// Offset east of UTC in minutes, when the text had one.
    offset: Option<i64>,
}

impl Fields {
    fn instant(&self) -> Option<Instant> {
        if !(1..=12).contains(&self.month)
            || self.day < 1
            || self.day > days_in_month(self.year, self.month)
        {
            return None;
        }
        if self.hour > 23 || self.minute > 59 || self.second > 60 {
            return None;
        }
        let days = days_from_civil(self.year, self.month, self.day);
        let local = days * 86_400 + (self.hour * 3600 + self.minute * 60 + self.second) as i64;
        Some(Instant {
            secs: local - self.offset.unwrap_or(0) * 60,
            ticks: self.ticks,
        })
    }
}

pub fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 0,
    }
}

/// Parses the date forms Entra accepts.
pub fn parse(s: &str) -> Option<Instant> {
    let t = s.trim();
    parse_iso(t).or_else(|| parse_entra(t))
}

/// `2020-03-16`, `2020-03-16-07:00`, `2009-06-15T01:45:30-07:00`, `2021-08-24 10:00:00Z`, `.fff`.
fn parse_iso(t: &str) -> Option<Instant> {
    let b = t.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> { t.get(r)?.parse().ok() };
    let mut f = Fields {
        year: num(0..4)? as i64,
        month: num(5..7)?,
        day: num(8..10)?,
        ..Fields::default()
    };
    let mut rest = &t[10..];
    if let Some(r) = rest.strip_prefix('T').or_else(|| rest.strip_prefix(' ')) {
        if r.len() >= 5 && r.as_bytes()[2] == b':' {
            f.hour = r.get(0..2)?.parse().ok()?;
            f.minute = r.get(3..5)?.parse().ok()?;
            rest = &r[5..];
            if rest.starts_with(':') {
                f.second = rest.get(1..3)?.parse().ok()?;
                rest = &rest[3..];
                if let Some(frac) = rest.strip_prefix('.') {
                    let digits: String = frac.chars().take_while(|c| c.is_ascii_digit()).collect();
                    let mut padded = digits.clone();
                    padded.truncate(7);
                    while padded.len() < 7 {
                        padded.push('0');
                    }
                    f.ticks = padded.parse().ok()?;
                    rest = &frac[digits.len()..];
                }
            }
        }
    }
    f.offset = parse_offset(rest)?;
    f.instant()
}

/// `Z`, `+08:00`, `-0700`, or nothing. `None` means garbage after the date.
fn parse_offset(rest: &str) -> Option<Option<i64>> {
    let r = rest.trim();
    if r.is_empty() {
        return Some(None);
    }
    if r == "Z" || r == "z" {
        return Some(Some(0));
    }
    let sign = match r.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits: String = r[1..].chars().filter(|c| c.is_ascii_digit()).collect();
    if digits.len() != 4 && digits.len() != 2 {
        return None;
    }
    let h: i64 = digits.get(0..2)?.parse().ok()?;
    let m: i64 = if digits.len() == 4 {
        digits.get(2..4)?.parse().ok()?
    } else {
        0
    };
    Some(Some(sign * (h * 60 + m)))
}

/// `8/25/2021 5:41:18 PM` (Entra's output format, read back).
fn parse_entra(t: &str) -> Option<Instant> {
    parse_with(t, "M/d/yyyy h:mm:ss tt").or_else(|| parse_with(t, "M/d/yyyy"))
}

/// Formats in Entra's `M/d/yyyy h:mm:ss tt`, UTC.
pub fn entra(i: Instant) -> String {
    format_with(i, 0, "M/d/yyyy h:mm:ss tt")
}

fn fields_of(i: Instant, offset_min: i64) -> Fields {
    let local = i.secs + offset_min * 60;
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    Fields {
        year: y,
        month: m,
        day: d,
        hour: (secs / 3600) as u32,
        minute: ((secs % 3600) / 60) as u32,
        second: (secs % 60) as u32,
        ticks: i.ticks,
        offset: Some(offset_min),
    }
}

/// .NET custom format tokens: runs of the same letter, quoted literals, `\x`.
fn tokens(fmt: &str) -> Vec<String> {
    let chars: Vec<char> = fmt.chars().collect();
    let mut out = vec![];
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' || c == '"' {
            let mut lit = String::from("'");
            i += 1;
            while i < chars.len() && chars[i] != c {
                lit.push(chars[i]);
                i += 1;
            }
            i += 1;
            out.push(lit);
            continue;
        }
        if c == '\\' && i + 1 < chars.len() {
            out.push(format!("'{}", chars[i + 1]));
            i += 2;
            continue;
        }
        if "yMdHhmsftzK".contains(c) {
            let mut j = i;
            while j < chars.len() && chars[j] == c {
                j += 1;
            }
            out.push(chars[i..j].iter().collect());
            i = j;
            continue;
        }
        out.push(format!("'{c}"));
        i += 1;
    }
    out
}

/// Formats with a .NET custom format string at the given offset (minutes).
pub fn format_with(i: Instant, offset_min: i64, fmt: &str) -> String {
    let f = fields_of(i, offset_min);
    let mut s = String::new();
    let h12 = if f.hour.is_multiple_of(12) {
        12
    } else {
        f.hour % 12
    };
    for t in tokens(fmt) {
        if let Some(lit) = t.strip_prefix('\'') {
            s.push_str(lit);
            continue;
        }
        let n = t.len();
        match t.chars().next().unwrap_or(' ') {
            'y' if n == 2 => s.push_str(&format!("{:02}", f.year.rem_euclid(100))),
            'y' if n == 1 => s.push_str(&format!("{}", f.year.rem_euclid(100))),
            'y' => s.push_str(&format!("{:0w$}", f.year, w = n)),
            'M' if n >= 4 => s.push_str(MONTHS[(f.month - 1) as usize]),
            'M' if n == 3 => s.push_str(&MONTHS[(f.month - 1) as usize][..3]),
            'M' => s.push_str(&format!("{:0w$}", f.month, w = n)),
            'd' if n >= 4 => s.push_str(weekday(i, offset_min)),
            'd' if n == 3 => s.push_str(&weekday(i, offset_min)[..3]),
            'd' => s.push_str(&format!("{:0w$}", f.day, w = n)),
            'H' => s.push_str(&format!("{:0w$}", f.hour, w = n.min(2))),
            'h' => s.push_str(&format!("{:0w$}", h12, w = n.min(2))),
            'm' => s.push_str(&format!("{:0w$}", f.minute, w = n.min(2))),
            's' => s.push_str(&format!("{:0w$}", f.second, w = n.min(2))),
            'f' => {
                let all = format!("{:07}", f.ticks);
                s.push_str(&all[..n.min(7)]);
            }
            't' => {
                let ampm = if f.hour < 12 { "AM" } else { "PM" };
                s.push_str(if n == 1 { &ampm[..1] } else { ampm });
            }
            'z' => {
                let sign = if offset_min < 0 { '-' } else { '+' };
                let a = offset_min.abs();
                match n {
                    1 => s.push_str(&format!("{sign}{}", a / 60)),
                    2 => s.push_str(&format!("{sign}{:02}", a / 60)),
                    _ => s.push_str(&format!("{sign}{:02}:{:02}", a / 60, a % 60)),
                }
            }
            'K' => {
                if offset_min == 0 {
                    s.push('Z');
                } else {
                    let sign = if offset_min < 0 { '-' } else { '+' };
                    s.push_str(&format!(
                        "{sign}{:02}:{:02}",
                        offset_min.abs() / 60,
                        offset_min.abs() % 60
                    ));
                }
            }
            _ => s.push_str(&t),
        }
    }
    s
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
];

fn weekday(i: Instant, offset_min: i64) -> &'static str {
    DAYS[((i.secs + offset_min * 60).div_euclid(86_400)).rem_euclid(7) as usize]
}

/// Parses with a .NET custom format string; returns the instant (UTC, using the
/// parsed offset if the format has one).
pub fn parse_with(text: &str, fmt: &str) -> Option<Instant> {
    parse_fields(text, fmt).and_then(|f| f.instant())
}

/// Parses and also returns the offset the text carried (minutes), for re-formatting.
pub fn parse_with_offset(text: &str, fmt: &str) -> Option<(Instant, i64)> {
    let f = parse_fields(text, fmt)?;
    Some((f.instant()?, f.offset.unwrap_or(0)))
}

fn parse_fields(text: &str, fmt: &str) -> Option<Fields> {
    let chars: Vec<char> = text.trim().chars().collect();
    let mut p = 0usize;
    let mut f = Fields {
        year: 1,
        month: 1,
        day: 1,
        ..Fields::default()
    };
    let mut pm: Option<bool> = None;
    let take_digits = |p: &mut usize, min: usize, max: usize| -> Option<u32> {
        let start = *p;
        while *p < chars.len() && *p - start < max && chars[*p].is_ascii_digit() {
            *p += 1;
        }
        if *p - start < min {
            return None;
        }
        chars[start..*p].iter().collect::<String>().parse().ok()
    };
    for t in tokens(fmt) {
        if let Some(lit) = t.strip_prefix('\'') {
            for c in lit.chars() {
                if chars.get(p) == Some(&c) {
                    p += 1;
                } else if c == ' ' {
                    continue;
                } else {
                    return None;
                }
            }
            continue;
        }
        let n = t.len();
        match t.chars().next().unwrap_or(' ') {
            'y' => {
                let v = take_digits(
                    &mut p,
                    if n <= 2 { 1 } else { n },
                    if n <= 2 { 2 } else { n.max(4) },
                )?;
                f.year = if n <= 2 { 2000 + v as i64 } else { v as i64 };
            }
            'M' if n >= 3 => {
                let rest: String = chars[p..].iter().collect();
                let (idx, len) = MONTHS.iter().enumerate().find_map(|(i, m)| {
                    if n == 3 && rest.starts_with(&m[..3]) {
                        Some((i, 3))
                    } else if rest.starts_with(m) {
                        Some((i, m.len()))
                    } else {
                        None
                    }
                })?;
                f.month = idx as u32 + 1;
                p += len;
            }
            'M' => f.month = take_digits(&mut p, n, 2)?,
            'd' if n >= 3 => {
                while p < chars.len() && chars[p].is_alphabetic() {
                    p += 1;
                }
            }
            'd' => f.day = take_digits(&mut p, n, 2)?,
            'H' | 'h' => f.hour = take_digits(&mut p, n.min(2), 2)?,
            'm' => f.minute = take_digits(&mut p, n.min(2), 2)?,
            's' => f.second = take_digits(&mut p, n.min(2), 2)?,
            'f' => {
                let v = take_digits(&mut p, n, n)?;
                f.ticks = v * 10u32.pow(7 - n.min(7) as u32);
            }
            't' => {
                let rest: String = chars[p..].iter().take(2).collect::<String>().to_uppercase();
                if rest.starts_with("AM") || rest.starts_with('A') {
                    pm = Some(false);
                } else if rest.starts_with("PM") || rest.starts_with('P') {
                    pm = Some(true);
                } else {
                    return None;
                }
                p += if n == 1 { 1 } else { 2 };
            }
            'z' | 'K' => {
                let rest: String = chars[p..].iter().collect();
                let end = rest
                    .char_indices()
                    .skip(1)
                    .find(|(_, c)| !(c.is_ascii_digit() || *c == ':'))
                    .map(|(i, _)| i)
                    .unwrap_or(rest.len());
                let off = parse_offset(&rest[..end])??;
                f.offset = Some(off);
                p += rest[..end].chars().count();
            }
            _ => return None,
        }
    }
    if p != chars.len() {
        return None;
    }
    if let Some(is_pm) = pm {
        if f.hour == 12 {
            f.hour = 0;
        }
        if is_pm {
            f.hour += 12;
        }
    }
    Some(f)
}

/// Adds an Entra interval (yyyy, m, d, ww, h, n, s); months clamp the day as .NET does.
pub fn add(i: Instant, interval: &str, n: i64) -> Option<Instant> {
    let secs = match interval {
        "d" => n * 86_400,
        "ww" => n * 7 * 86_400,
        "h" => n * 3600,
        "n" => n * 60,
        "s" => n,
        "m" | "yyyy" => {
            let f = fields_of(i, 0);
            let months = if interval == "m" { n } else { n * 12 };
            let total = f.year * 12 + (f.month as i64 - 1) + months;
            let (y, m) = (total.div_euclid(12), (total.rem_euclid(12) + 1) as u32);
            let day = f.day.min(days_in_month(y, m));
            let g = Fields {
                year: y,
                month: m,
                day,
                offset: Some(0),
                ..f
            };
            return g.instant();
        }
        _ => return None,
    };
    Some(Instant {
        secs: i.secs + secs,
        ticks: i.ticks,
    })
}

/// VB DateDiff: the number of interval boundaries crossed from `a` to `b`.
pub fn diff(interval: &str, a: Instant, b: Instant) -> Option<i64> {
    let day = |x: Instant| x.secs.div_euclid(86_400);
    Some(match interval {
        "yyyy" => fields_of(b, 0).year - fields_of(a, 0).year,
        "m" => {
            let (fa, fb) = (fields_of(a, 0), fields_of(b, 0));
            (fb.year * 12 + fb.month as i64) - (fa.year * 12 + fa.month as i64)
        }
        "d" => day(b) - day(a),
        // Weeks start on Sunday; day 0 (1970-01-01) was a Thursday.
        "ww" => (day(b) + 4).div_euclid(7) - (day(a) + 4).div_euclid(7),
        "h" => b.secs.div_euclid(3600) - a.secs.div_euclid(3600),
        "n" => b.secs.div_euclid(60) - a.secs.div_euclid(60),
        "s" => b.secs - a.secs,
        _ => return None,
    })
}

/// Seconds between 1601-01-01 and 1970-01-01 (Active Directory FILETIME epoch).
const AD_EPOCH_OFFSET: i64 = 11_644_473_600;

/// AD FILETIME (100 ns ticks since 1601) → instant.
pub fn from_ad(ticks: i64) -> Instant {
    Instant {
        secs: ticks.div_euclid(10_000_000) - AD_EPOCH_OFFSET,
        ticks: ticks.rem_euclid(10_000_000) as u32,
    }
}

/// Instant → AD FILETIME.
pub fn to_ad(i: Instant) -> i64 {
    (i.secs + AD_EPOCH_OFFSET) * 10_000_000 + i.ticks as i64
}

/// Now, truncated to the second.
pub fn now() -> Instant {
    Instant {
        secs: crate::clock::now(),
        ticks: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(s: &str) -> String {
        parse(s)
            .map(entra)
            .unwrap_or_else(|| format!("unparsed {s}"))
    }

    #[test]
    fn cdate_examples() {
        assert_eq!(e("2020-03-16-07:00"), "3/16/2020 7:00:00 AM");
        assert_eq!(e("2021-06-30+08:00"), "6/29/2021 4:00:00 PM");
        assert_eq!(e("2009-06-15T01:45:30-07:00"), "6/15/2009 8:45:30 AM");
        assert_eq!(e("8/25/2021 5:41:18 PM"), "8/25/2021 5:41:18 PM");
        assert!(parse("not a date").is_none());
        assert!(parse("2021-02-30").is_none());
    }

    #[test]
    fn format_examples() {
        let (i, off) = parse_with_offset("20150123105347.1Z", "yyyyMMddHHmmss.fZ").expect("parse");
        assert_eq!(format_with(i, off, "yyyy-MM-dd"), "2015-01-23");
        let (i, off) = parse_with_offset("2020-12-31-08:00", "yyyy-MM-ddzzz").expect("parse");
        assert_eq!(format_with(i, off, "yyyy-MM-dd"), "2020-12-31");
    }
}
