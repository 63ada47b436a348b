//! Timestamps as the gateway stores them: RFC 3339, UTC, milliseconds; text that sorts as time.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub fn now() -> String {
    format(OffsetDateTime::now_utc())
}

/// The time `d` from now, as stored (leases, expiries).
pub fn in_(d: std::time::Duration) -> String {
    format(OffsetDateTime::now_utc() + d)
}

pub fn format(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let t = t
        .replace_nanosecond(t.millisecond() as u32 * 1_000_000)
        .unwrap_or(t);
    t.format(&time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    ))
    .unwrap_or_else(|_| t.format(&Rfc3339).unwrap_or_default())
}

/// Parses a duration such as `8h`, `30m`, `90s`, `7d` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (try 30s, 10m, 8h, 7d)"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("`{s}` is not a duration (try 30s, 10m, 8h, 7d)")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations() {
        assert_eq!(super::parse_duration("8h").unwrap().as_secs(), 8 * 3600);
        assert_eq!(super::parse_duration("90").unwrap().as_secs(), 90);
        assert!(super::parse_duration("8 hours").is_err());
        assert!(super::parse_duration("").is_err());
    }

    #[test]
    fn timestamps_sort_as_text() {
        let a = super::format(time::OffsetDateTime::from_unix_timestamp(1_000_000_000).unwrap());
        assert_eq!(a, "2001-09-09T01:46:40.000Z");
    }
}
