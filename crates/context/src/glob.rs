//! Go's `path/filepath.Match` (Unix flavour, separator `/`), ported line by line from Go 1.22
//! so that patterns docker accepts or rejects are accepted or rejected here too.
//!
//! Works on bytes like Go does: `*` may skip into the middle of a multi-byte character, and
//! character classes decode UTF-8 the way `utf8.DecodeRuneInString` does.

/// `filepath.ErrBadPattern`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("syntax error in pattern")]
pub struct BadPattern;

const SEPARATOR: u8 = b'/';
const RUNE_ERROR: u32 = 0xFFFD;

/// Reports whether `name` matches the shell pattern `pattern`, exactly as Go's
/// `filepath.Match`: `*` matches any run of non-`/` characters, `?` one non-`/` character,
/// `[...]` a class (`^` negates, `lo-hi` ranges, `\` escapes), `\c` matches `c`.
/// The whole of `name` must match. Malformed patterns give [`BadPattern`]; like Go 1.22 the
/// rest of the pattern is still checked for syntax when the match fails early.
pub fn go_match(pattern: &str, name: &str) -> Result<bool, BadPattern> {
    let mut pattern = pattern.as_bytes();
    let mut name = name.as_bytes();
    'pattern: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            // Trailing * matches rest of string unless it has a /.
            return Ok(!name.contains(&SEPARATOR));
        }
        // Look for a match at the current position. If this is the last chunk, the name must
        // be exhausted, otherwise we could give a false result where the star could still match.
        let (t, ok, err) = match_chunk(chunk, name);
        if ok && (t.is_empty() || !pattern.is_empty()) {
            name = t;
            continue;
        }
        if let Some(err) = err {
            return Err(err);
        }
        if star {
            // Look for a match skipping i+1 bytes; a star cannot skip '/'.
            let mut i = 0;
            while i < name.len() && name[i] != SEPARATOR {
                let (t, ok, err) = match_chunk(chunk, &name[i + 1..]);
                if ok {
                    // Last chunk: the name must be exhausted.
                    if pattern.is_empty() && !t.is_empty() {
                        i += 1;
                        continue;
                    }
                    name = t;
                    continue 'pattern;
                }
                if let Some(err) = err {
                    return Err(err);
                }
                i += 1;
            }
        }
        // Before returning false with no error, check that the remainder of the pattern is
        // syntactically valid.
        while !pattern.is_empty() {
            let (_, chunk, rest) = scan_chunk(pattern);
            pattern = rest;
            if let (_, _, Some(err)) = match_chunk(chunk, b"") {
                return Err(err);
            }
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

/// Whether `s` contains any of the characters `filepath.Match` treats specially (`*?[\`).
pub fn has_meta(s: &str) -> bool {
    s.bytes().any(|b| matches!(b, b'*' | b'?' | b'[' | b'\\'))
}

/// Next segment of the pattern: a non-star string, possibly preceded by stars.
fn scan_chunk(mut pattern: &[u8]) -> (bool, &[u8], &[u8]) {
    let mut star = false;
    while let [b'*', rest @ ..] = pattern {
        pattern = rest;
        star = true;
    }
    let mut inrange = false;
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            // A trailing backslash is reported as a bad pattern by match_chunk.
            b'\\' if i + 1 < pattern.len() => i += 1,
            b'[' => inrange = true,
            b']' => inrange = false,
            b'*' if !inrange => break,
            _ => {}
        }
        i += 1;
    }
    (star, &pattern[..i], &pattern[i..])
}

/// Whether `chunk` (no stars) matches the start of `s`; returns the rest of `s`. Once the
/// match has failed the chunk is still parsed, to report syntax errors, without reading `s`.
fn match_chunk<'a>(mut chunk: &[u8], mut s: &'a [u8]) -> (&'a [u8], bool, Option<BadPattern>) {
    let mut failed = false;
    while !chunk.is_empty() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match chunk[0] {
            b'[' => {
                let mut r = 0u32;
                if !failed {
                    let (c, n) = decode_rune(s);
                    r = c;
                    s = &s[n..];
                }
                chunk = &chunk[1..];
                let mut negated = false;
                if let [b'^', rest @ ..] = chunk {
                    negated = true;
                    chunk = rest;
                }
                let mut matched = false;
                let mut nrange = 0;
                loop {
                    if !chunk.is_empty() && chunk[0] == b']' && nrange > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let (lo, rest) = match get_esc(chunk) {
                        Ok(v) => v,
                        Err(e) => return (b"", false, Some(e)),
                    };
                    chunk = rest;
                    let mut hi = lo;
                    // get_esc guarantees a non-empty remainder.
                    if chunk[0] == b'-' {
                        let (h, rest) = match get_esc(&chunk[1..]) {
                            Ok(v) => v,
                            Err(e) => return (b"", false, Some(e)),
                        };
                        hi = h;
                        chunk = rest;
                    }
                    if lo <= r && r <= hi {
                        matched = true;
                    }
                    nrange += 1;
                }
                if matched == negated {
                    failed = true;
                }
            }
            b'?' => {
                if !failed {
                    if s[0] == SEPARATOR {
                        failed = true;
                    }
                    let (_, n) = decode_rune(s);
                    s = &s[n..];
                }
                chunk = &chunk[1..];
            }
            c => {
                if c == b'\\' {
                    chunk = &chunk[1..];
                    if chunk.is_empty() {
                        return (b"", false, Some(BadPattern));
                    }
                }
                if !failed {
                    if chunk[0] != s[0] {
                        failed = true;
                    }
                    s = &s[1..];
                }
                chunk = &chunk[1..];
            }
        }
    }
    if failed {
        return (b"", false, None);
    }
    (s, true, None)
}

/// A possibly escaped character of a character class, and the rest of the chunk.
fn get_esc(mut chunk: &[u8]) -> Result<(u32, &[u8]), BadPattern> {
    if chunk.is_empty() || chunk[0] == b'-' || chunk[0] == b']' {
        return Err(BadPattern);
    }
    if chunk[0] == b'\\' {
        chunk = &chunk[1..];
        if chunk.is_empty() {
            return Err(BadPattern);
        }
    }
    let (r, n) = decode_rune(chunk);
    if r == RUNE_ERROR && n == 1 {
        return Err(BadPattern);
    }
    let rest = &chunk[n..];
    if rest.is_empty() {
        return Err(BadPattern);
    }
    Ok((r, rest))
}

/// `utf8.DecodeRuneInString`: the first character and its length; (U+FFFD, 1) for an invalid
/// sequence, (U+FFFD, 0) for empty input.
pub(crate) fn decode_rune(s: &[u8]) -> (u32, usize) {
    if s.is_empty() {
        return (RUNE_ERROR, 0);
    }
    let head = &s[..s.len().min(4)];
    let valid = match std::str::from_utf8(head) {
        Ok(v) => v,
        // valid_up_to is a char boundary, so this cannot fail.
        Err(e) => std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or(""),
    };
    match valid.chars().next() {
        Some(c) => (c as u32, c.len_utf8()),
        None => (RUNE_ERROR, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Go's matchTests from src/path/filepath/match_test.go (Go 1.22).
    #[test]
    fn go_match_table() {
        let bad = Err(BadPattern);
        let cases: &[(&str, &str, Result<bool, BadPattern>)] = &[
            ("abc", "abc", Ok(true)),
            ("*", "abc", Ok(true)),
            ("*c", "abc", Ok(true)),
            ("a*", "a", Ok(true)),
            ("a*", "abc", Ok(true)),
            ("a*", "ab/c", Ok(false)),
            ("a*/b", "abc/b", Ok(true)),
            ("a*/b", "a/c/b", Ok(false)),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Ok(false)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Ok(false)),
            ("a*b?c*x", "abxbbxdbxebxczzx", Ok(true)),
            ("a*b?c*x", "abxbbxdbxebxczzy", Ok(false)),
            ("ab[c]", "abc", Ok(true)),
            ("ab[b-d]", "abc", Ok(true)),
            ("ab[e-g]", "abc", Ok(false)),
            ("ab[^c]", "abc", Ok(false)),
            ("ab[^b-d]", "abc", Ok(false)),
            ("ab[^e-g]", "abc", Ok(true)),
            ("a\\*b", "a*b", Ok(true)),
            ("a\\*b", "ab", Ok(false)),
            ("a?b", "a☺b", Ok(true)),
            ("a[^a]b", "a☺b", Ok(true)),
            ("a???b", "a☺b", Ok(false)),
            ("a[^a][^a][^a]b", "a☺b", Ok(false)),
            ("[a-ζ]*", "α", Ok(true)),
            ("*[a-ζ]", "A", Ok(false)),
            ("a?b", "a/b", Ok(false)),
            ("a*b", "a/b", Ok(false)),
            ("[\\]a]", "]", Ok(true)),
            ("[\\-]", "-", Ok(true)),
            ("[x\\-]", "x", Ok(true)),
            ("[x\\-]", "-", Ok(true)),
            ("[x\\-]", "z", Ok(false)),
            ("[\\-x]", "x", Ok(true)),
            ("[\\-x]", "-", Ok(true)),
            ("[\\-x]", "a", Ok(false)),
            ("[]a]", "]", bad.clone()),
            ("[-]", "-", bad.clone()),
            ("[x-]", "x", bad.clone()),
            ("[x-]", "-", bad.clone()),
            ("[x-]", "z", bad.clone()),
            ("[-x]", "x", bad.clone()),
            ("[-x]", "-", bad.clone()),
            ("[-x]", "a", bad.clone()),
            ("\\", "a", bad.clone()),
            ("[a-b-c]", "a", bad.clone()),
            ("[", "a", bad.clone()),
            ("[^", "a", bad.clone()),
            ("[^bc", "a", bad.clone()),
            ("a[", "a", bad.clone()),
            ("a[", "ab", bad.clone()),
            ("a[", "x", bad.clone()),
            ("a/b[", "x", bad.clone()),
            ("*x", "xxx", Ok(true)),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(
                &go_match(pattern, name),
                want,
                "Match({pattern:?}, {name:?})"
            );
        }
    }

    #[test]
    fn syntax_checked_past_a_failed_match() {
        // Go 1.22 checks the whole pattern even when an early chunk already failed.
        assert_eq!(go_match("x*[", "abc"), Err(BadPattern));
        assert_eq!(go_match("a*b\\", "xyz"), Err(BadPattern));
        // ...but a trailing star returns before anything after it could be seen; there is
        // nothing after it, so that is the whole pattern.
        assert_eq!(go_match("[a-z]*", "q/r"), Ok(false));
        // What docker's dockerignore parser relies on: validation against ".".
        assert_eq!(go_match("[Local-Only]/", "."), Ok(false));
        assert_eq!(go_match("foo[", "."), Err(BadPattern));
    }

    #[test]
    fn star_may_stop_inside_a_multibyte_char() {
        // Skipping is per byte as in Go; must not panic on non-boundaries.
        assert_eq!(go_match("*x", "☘x"), Ok(true));
        assert_eq!(go_match("*[^a]", "☘☘"), Ok(true));
        assert_eq!(go_match("*[a-ζ]", "xα"), Ok(true));
        assert_eq!(go_match("?", "é"), Ok(true));
        assert_eq!(go_match("??", "é"), Ok(false));
    }

    #[test]
    fn meta() {
        assert!(has_meta("a*"));
        assert!(has_meta("a?"));
        assert!(has_meta("[a]"));
        assert!(has_meta("a\\b"));
        assert!(!has_meta("abc/def.txt"));
        assert!(!has_meta("!a"));
    }
}
