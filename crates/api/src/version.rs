//! API version constants.

/// The newest Docker Engine API version berthd claims (Docker 27.x).
pub const API_VERSION: &str = "1.47";
/// The oldest API version berthd accepts on a versioned path.
pub const MIN_API_VERSION: &str = "1.24";
/// The engine version reported by `/version`.
pub const ENGINE_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The `Server` header value.
pub const SERVER_HEADER: &str = concat!("Berth/", env!("CARGO_PKG_VERSION"), " (linux)");

/// Parses "1.47" into (1, 47). Returns None for anything else.
pub fn parse(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Compares two version strings; unparsable versions compare as lowest.
pub fn cmp(a: &str, b: &str) -> std::cmp::Ordering {
    parse(a).unwrap_or((0, 0)).cmp(&parse(b).unwrap_or((0, 0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn compares() {
        assert_eq!(cmp("1.9", "1.24"), std::cmp::Ordering::Less);
        assert_eq!(cmp("1.47", "1.47"), std::cmp::Ordering::Equal);
        assert!(parse("x").is_none());
    }
}
