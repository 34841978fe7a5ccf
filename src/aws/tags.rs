//! How awsvpc marks what it creates: tags that `awsvpc cleanup` and the start-up sweep find,
//! a run id per capture, and deterministic client tokens so that a retried or resumed
//! create never makes a second resource.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const MANAGED: &str = "awsvpc:managed";
pub const RUN_ID: &str = "awsvpc:run-id";
pub const CREATED_BY: &str = "awsvpc:created-by";
pub const EXPIRES: &str = "awsvpc:expires";
/// How long after its start a capture's resources count as leftovers for the start-up
/// sweep of the same principal. Captures are not expected to run longer; one that does can
/// keep its mirror with --cleanup-expired false on the other captures.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// A run id: UTC time plus randomness, sortable and safe in tags, tokens and file names.
pub fn new_run_id() -> String {
    // The OS's randomness on every OS (uuid's v4 takes it from getrandom).
    let u = uuid::Uuid::new_v4();
    let r = &u.as_bytes()[..4];
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let nanos = now.subsec_nanos().to_le_bytes();
    let ts = crate::civil::timestamp(); // 2026-11-22T11:42:37.264Z
    let compact: String = ts.chars().filter(|c| c.is_ascii_digit()).take(14).collect();
    format!(
        "{compact}-{:02x}{:02x}{:02x}{:02x}",
        r[0] ^ nanos[0],
        r[1] ^ nanos[1],
        r[2],
        r[3]
    )
}

/// Client token for one create call of a run: at most 64 ASCII characters (EC2's limit).
pub fn client_token(run_id: &str, what: &str) -> String {
    let mut t = format!("awsvpc-{run_id}-{what}");
    t.truncate(64);
    t
}

/// RFC 3339 UTC time `d` after now, the form of the `awsvpc:expires` tag.
pub fn expires_after(d: Duration) -> String {
    rfc3339(SystemTime::now() + d)
}

pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let (y, m, d) = crate::civil::civil_from_days(secs.div_euclid(86_400));
    let r = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        r / 3600,
        r / 60 % 60,
        r % 60
    )
}

/// Parses the `awsvpc:expires` form back; `None` for anything else.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, se) = (
        n(0..4)?,
        n(5..7)?,
        n(8..10)?,
        n(11..13)?,
        n(14..16)?,
        n(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = crate::civil::days_from_civil(y, mo as u32, d as u32);
    let secs = days * 86_400 + h * 3600 + mi * 60 + se;
    (secs >= 0).then(|| UNIX_EPOCH + Duration::from_secs(secs as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_fit_and_ids_differ() {
        let a = new_run_id();
        assert_eq!(a.len(), 23, "{a}");
        assert!(client_token(&a, &"x".repeat(100)).len() <= 64);
        assert_eq!(client_token("r1", "filter"), "awsvpc-r1-filter");
    }

    #[test]
    fn expiry_round_trips() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let s = rfc3339(t);
        assert_eq!(s, "2026-11-18T11:06:40Z");
        assert_eq!(parse_rfc3339(&s), Some(t));
        assert_eq!(parse_rfc3339("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("tomorrow"), None);
    }
}
