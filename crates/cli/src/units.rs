//! Human-readable units, byte-for-byte like docker/go-units and Go's fmt.

use std::time::Duration;

/// go-units `HumanDuration`: "Less than a second", "About a minute", "3 hours", ...
pub fn human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    if seconds < 1 {
        return "Less than a second".into();
    }
    if seconds == 1 {
        return "1 second".into();
    }
    if seconds < 60 {
        return format!("{seconds} seconds");
    }
    let minutes = seconds / 60;
    if minutes == 1 {
        return "About a minute".into();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    // go-units rounds to the nearest hour here (d.Round(time.Hour)).
    let hours = (d.as_secs_f64() / 3600.0).round() as u64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", seconds / 3600 / 24 / 365)
}

/// "X ago" for a Unix timestamp, as docker's RunningFor/CreatedSince.
pub fn since(unix: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    let d = Duration::from_secs(now.saturating_sub(unix).max(0) as u64);
    format!("{} ago", human_duration(d))
}

/// Go's `time.Unix(t, 0).String()` in local time: "2006-01-02 15:04:05 -0700 MST".
pub fn go_time_string(unix: i64) -> String {
    use chrono::TimeZone;
    match chrono::Local.timestamp_opt(unix, 0).single() {
        Some(t) => {
            let tz = t.format("%Z").to_string();
            // chrono prints "+00:00" as the name of an unnamed zone; Go prints "UTC".
            let tz = if tz == "+00:00" { "UTC".into() } else { tz };
            format!("{} {}", t.format("%Y-%m-%d %H:%M:%S %z"), tz)
        }
        None => unix.to_string(),
    }
}

/// Go's `time.Unix(t,0).Format(time.RFC3339)` in local time.
pub fn rfc3339(unix: i64) -> String {
    use chrono::TimeZone;
    match chrono::Local.timestamp_opt(unix, 0).single() {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        None => unix.to_string(),
    }
}

/// Go's `%.*g` for non-negative finite numbers.
pub fn go_g(v: f64, prec: usize) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let prec = prec.max(1);
    // Use Rust's exponent formatting to get the rounded mantissa and exponent.
    let e = format!("{:.*e}", prec - 1, v);
    let (mant, exp) = match e.split_once('e') {
        Some((m, x)) => (m.to_string(), x.parse::<i32>().unwrap_or(0)),
        None => return e,
    };
    if exp < -4 || exp >= prec as i32 {
        let mant = trim_zeros(&mant);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", exp.abs())
    } else {
        let decimals = (prec as i32 - 1 - exp).max(0) as usize;
        trim_zeros(&format!("{:.*}", decimals, v))
    }
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

const DECIMAL_ABBRS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];

/// go-units `HumanSizeWithPrecision` (decimal units).
pub fn human_size_prec(size: f64, prec: usize) -> String {
    let mut size = size;
    let mut i = 0;
    while size >= 1000.0 && i < DECIMAL_ABBRS.len() - 1 {
        size /= 1000.0;
        i += 1;
    }
    format!("{}{}", go_g(size, prec), DECIMAL_ABBRS[i])
}

/// go-units `HumanSize` (precision 4).
pub fn human_size(size: f64) -> String {
    human_size_prec(size, 4)
}

/// go-units `BytesSize` (binary units, precision 4), used by `docker info`.
pub fn bytes_size(size: f64) -> String {
    const ABBRS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let mut size = size;
    let mut i = 0;
    while size >= 1024.0 && i < ABBRS.len() - 1 {
        size /= 1024.0;
        i += 1;
    }
    format!("{}{}", go_g(size, 4), ABBRS[i])
}

/// go-units `RAMInBytes`: "512m", "1g", "1.5GB", "100" (bytes); binary multipliers.
pub fn ram_in_bytes(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let num_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(num_end);
    let n: f64 = num.parse().map_err(|_| format!("invalid size: '{s}'"))?;
    let unit = unit.trim_end_matches('b').trim_end_matches('i');
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(format!("invalid size: '{s}'")),
    };
    // "1b" and "1ib" must be rejected like go-units: only one suffix letter allowed.
    if lower.len() - num_end > 3 {
        return Err(format!("invalid size: '{s}'"));
    }
    Ok((n * mult) as i64)
}

/// Docker's `--cpus` value: decimal CPUs to NanoCPUs.
pub fn parse_cpus(s: &str) -> Result<i64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("invalid argument \"{s}\" for \"--cpus\" flag: failed to parse {s} as a rational number"))?;
    if v < 0.0 {
        return Err(format!(
            "invalid argument \"{s}\" for \"--cpus\" flag: value must be positive"
        ));
    }
    Ok((v * 1e9).round() as i64)
}

/// Docker's `--since`/`--until`: RFC3339 timestamps, Unix seconds or a relative duration
/// ("10m", "1h30m") meaning "that long before now". Returns Unix seconds.
pub fn parse_timestamp(s: &str, now: i64) -> Result<i64, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp());
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S") {
        return Ok(t.and_utc().timestamp());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc().timestamp());
        }
    }
    if let Ok(f) = s.parse::<f64>() {
        return Ok(f as i64);
    }
    parse_go_duration(s)
        .map(|d| now - d.as_secs() as i64)
        .ok_or_else(|| {
            format!(
                "invalid value for \"since\": failed to parse value as time or duration: \"{s}\""
            )
        })
}

/// Go's `time.ParseDuration` for the units docker users type (h, m, s, ms).
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let n_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        if n_end == 0 {
            return None;
        }
        let n: f64 = rest[..n_end].parse().ok()?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..u_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += n * mult;
        rest = &rest[u_end..];
    }
    Some(Duration::from_secs_f64(total))
}

/// A file error the way Go prints it: "open PATH: no such file or directory".
pub fn go_open_error(path: &str, e: &std::io::Error) -> String {
    let reason = match e.raw_os_error() {
        // strerror text, lower-cased like Go's syscall.Errno strings.
        Some(_) => {
            let s = e.to_string();
            let s = s.split(" (os error").next().unwrap_or(&s).to_string();
            let mut c = s.chars();
            match c.next() {
                Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
                None => s,
            }
        }
        None => e.to_string(),
    };
    format!("open {path}: {reason}")
}

/// docker's `stringid.TruncateID`: drop an algorithm prefix, keep 12 characters.
pub fn truncate_id(id: &str) -> String {
    let id = id.split_once(':').map(|(_, h)| h).unwrap_or(id);
    id.chars().take(12).collect()
}

/// docker/cli `formatter.Ellipsis`: cut to `max` characters, the last one being "…".
pub fn ellipsis(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// Go's `strconv.Quote` for the strings we print (COMMAND column).
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_match_go_units() {
        let s = Duration::from_secs;
        assert_eq!(
            human_duration(Duration::from_millis(500)),
            "Less than a second"
        );
        assert_eq!(human_duration(s(1)), "1 second");
        assert_eq!(human_duration(s(47)), "47 seconds");
        assert_eq!(human_duration(s(60)), "About a minute");
        assert_eq!(human_duration(s(119)), "About a minute");
        assert_eq!(human_duration(s(120)), "2 minutes");
        assert_eq!(human_duration(s(3599)), "59 minutes");
        assert_eq!(human_duration(s(3600)), "About an hour");
        assert_eq!(human_duration(s(5400)), "2 hours");
        assert_eq!(human_duration(s(47 * 3600)), "47 hours");
        assert_eq!(human_duration(s(3 * 86400)), "3 days");
        assert_eq!(human_duration(s(15 * 86400)), "2 weeks");
        assert_eq!(human_duration(s(90 * 86400)), "3 months");
        assert_eq!(human_duration(s(800 * 86400)), "2 years");
    }

    #[test]
    fn sizes_match_go_units() {
        assert_eq!(human_size_prec(0.0, 3), "0B");
        assert_eq!(human_size_prec(999.0, 3), "999B");
        assert_eq!(human_size_prec(1000.0, 3), "1kB");
        assert_eq!(human_size_prec(1_234_567.0, 3), "1.23MB");
        assert_eq!(human_size_prec(4_194_304.0, 3), "4.19MB");
        assert_eq!(human_size_prec(12_345.0, 3), "12.3kB");
        assert_eq!(human_size_prec(999_500.0, 3), "1e+03kB");
        assert_eq!(human_size(1_000_000_000.0), "1GB");
        assert_eq!(bytes_size(2.0 * 1024.0 * 1024.0 * 1024.0), "2GiB");
        assert_eq!(bytes_size(1536.0), "1.5KiB");
    }

    #[test]
    fn go_g_formats() {
        assert_eq!(go_g(1.5, 3), "1.5");
        assert_eq!(go_g(100.0, 3), "100");
        assert_eq!(go_g(0.0001, 3), "0.0001");
        assert_eq!(go_g(0.00001, 3), "1e-05");
    }

    #[test]
    fn ram_in_bytes_parses_units() {
        assert_eq!(ram_in_bytes("512m"), Ok(512 * 1024 * 1024));
        assert_eq!(ram_in_bytes("1g"), Ok(1024 * 1024 * 1024));
        assert_eq!(ram_in_bytes("1GB"), Ok(1024 * 1024 * 1024));
        assert_eq!(ram_in_bytes("64k"), Ok(65536));
        assert_eq!(ram_in_bytes("100"), Ok(100));
        assert_eq!(ram_in_bytes("1.5k"), Ok(1536));
        assert!(ram_in_bytes("abc").is_err());
        assert!(ram_in_bytes("10x").is_err());
    }

    #[test]
    fn cpus_and_durations() {
        assert_eq!(parse_cpus("1.5"), Ok(1_500_000_000));
        assert!(parse_cpus("x").is_err());
        assert_eq!(parse_go_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_timestamp("10m", 1000), Ok(400));
        assert_eq!(parse_timestamp("1700000000", 0), Ok(1_700_000_000));
        assert_eq!(
            parse_timestamp("2024-01-01T00:00:00Z", 0),
            Ok(1_704_067_200)
        );
    }

    #[test]
    fn open_errors_read_like_go() {
        let e = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(
            go_open_error("x.env", &e),
            "open x.env: no such file or directory"
        );
        let e = std::io::Error::from_raw_os_error(libc::EACCES);
        assert_eq!(
            go_open_error("/root/x", &e),
            "open /root/x: permission denied"
        );
    }

    #[test]
    fn ids_and_ellipsis() {
        assert_eq!(truncate_id("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(truncate_id("0123456789abcdef"), "0123456789ab");
        assert_eq!(
            ellipsis("sh -c 'while true; do sleep 1; done'", 20),
            "sh -c 'while true; …"
        );
        assert_eq!(ellipsis("short", 20), "short");
        assert_eq!(go_quote("a \"b\"\n"), "\"a \\\"b\\\"\\n\"");
    }
}
