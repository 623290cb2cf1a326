//! `.dockerignore` as docker reads and applies it: `moby/patternmatcher/ignorefile.ReadAll`
//! for the file and `moby/patternmatcher` for the matching.
//!
//! patternmatcher turns each pattern into a Go regular expression (or, for simple shapes, an
//! exact/prefix/suffix string test). Its translation has quirks (`[^a]` matches `/`, `**` only
//! behaves as "any directories" when followed by `/`, `\d` is a digit class, ...). To accept and
//! match the same paths we build the very same regular expression text and run it with a small
//! RE2-compatible engine (the subset that translation can produce), instead of a re-derived glob.

use crate::glob::{go_match, BadPattern};

#[derive(Debug, thiserror::Error)]
pub enum IgnoreError {
    /// Docker reports these as `filepath.ErrBadPattern` ("syntax error in pattern").
    #[error("syntax error in pattern: {0}")]
    BadPattern(String),
    #[error("illegal exclusion pattern: \"!\"")]
    IllegalExclusion,
    /// Valid for docker but using a Go regexp feature this crate does not implement
    /// (Unicode classes `\pX`, alternation, counted repetition).
    #[error("unsupported pattern {pattern:?}: {what}")]
    Unsupported { pattern: String, what: String },
}

/// `ignorefile.ReadAll`: the patterns of a `.dockerignore` file, in order.
///
/// A UTF-8 BOM is dropped; lines starting with `#` (before trimming) are comments; lines are
/// trimmed and blank ones skipped; a leading `!` marks an exception; the rest goes through
/// `filepath.Clean` and loses one leading `/`, so `/foo` and `foo` are the same pattern.
pub fn read_dockerignore(content: &str) -> Vec<String> {
    let content = content.strip_prefix('\u{feff}').unwrap_or(content);
    let mut out = Vec::new();
    // bufio.ScanLines: split at '\n', drop one trailing '\r'.
    for line in content.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with('#') {
            continue;
        }
        let pattern = line.trim();
        if pattern.is_empty() {
            continue;
        }
        let (invert, pattern) = match pattern.strip_prefix('!') {
            Some(rest) => (true, rest.trim()),
            None => (false, pattern),
        };
        let mut pattern = pattern.to_string();
        if !pattern.is_empty() {
            pattern = go_clean(&pattern);
            if pattern.len() > 1 && pattern.starts_with('/') {
                pattern.remove(0);
            }
        }
        if invert {
            pattern.insert(0, '!');
        }
        out.push(pattern);
    }
    out
}

/// Go's `filepath.Clean` on Unix: shortest equivalent path, purely lexically.
pub fn go_clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let p = path.as_bytes();
    let rooted = p[0] == b'/';
    let n = p.len();
    let mut out: Vec<u8> = Vec::with_capacity(n);
    let (mut r, mut dotdot) = (0, 0);
    if rooted {
        out.push(b'/');
        r = 1;
        dotdot = 1;
    }
    while r < n {
        if p[r] == b'/' || (p[r] == b'.' && (r + 1 == n || p[r + 1] == b'/')) {
            // Empty or "." element.
            r += 1;
        } else if p[r] == b'.' && p[r + 1] == b'.' && (r + 2 == n || p[r + 2] == b'/') {
            r += 2;
            if out.len() > dotdot {
                // Back up to the previous separator.
                let mut w = out.len() - 1;
                while w > dotdot && out[w] != b'/' {
                    w -= 1;
                }
                out.truncate(w);
            } else if !rooted {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(b"..");
                dotdot = out.len();
            }
        } else {
            if (rooted && out.len() != 1) || (!rooted && !out.is_empty()) {
                out.push(b'/');
            }
            while r < n && p[r] != b'/' {
                out.push(p[r]);
                r += 1;
            }
        }
    }
    if out.is_empty() {
        out.push(b'.');
    }
    // Only whole components were copied or removed, so this is still valid UTF-8.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Go's `filepath.Dir` on Unix.
fn go_dir(path: &str) -> String {
    match path.rfind('/') {
        Some(i) => go_clean(&path[..=i]),
        None => ".".to_string(),
    }
}

/// How one pattern is tested (patternmatcher's `matchType`).
#[derive(Debug, Clone)]
enum Kind {
    Exact,
    /// Pattern ended in `**` with nothing special before it: a byte prefix test.
    Prefix(Vec<u8>),
    /// Pattern started with `**` with nothing special after it: a byte suffix test.
    Suffix(Vec<u8>),
    Regexp(re::Program),
}

#[derive(Debug, Clone)]
struct Pattern {
    cleaned: String,
    /// Number of '/'-separated parts of `cleaned` (only used by the legacy `Matches`).
    ndirs: usize,
    exclusion: bool,
    kind: Kind,
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            Kind::Exact => path == self.cleaned,
            Kind::Prefix(prefix) => path.as_bytes().starts_with(prefix),
            Kind::Suffix(suffix) => {
                let p = path.as_bytes();
                // "**/foo" also matches "foo" itself.
                p.ends_with(suffix) || (suffix.first() == Some(&b'/') && p == &suffix[1..])
            }
            Kind::Regexp(prog) => prog.is_match(path),
        }
    }
}

/// Characters patternmatcher escapes before building its regexp: regexp syntax that means
/// nothing to `filepath.Match`.
fn should_escape(c: char) -> bool {
    matches!(c, '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$')
}

/// patternmatcher's `Pattern.compile` for the '/' separator.
fn compile(pattern: &str) -> Result<Kind, re::Error> {
    #[derive(PartialEq)]
    enum Detected {
        Exact,
        Prefix,
        Suffix,
        Regexp,
    }
    let mut chars: Vec<char> = pattern.chars().collect();
    // text/scanner skips a BOM at the very start.
    if chars.first() == Some(&'\u{feff}') {
        chars.remove(0);
    }
    let mut reg = String::from("^");
    let mut detected = Detected::Exact;
    let mut idx = 0;
    let mut i = 0;
    while idx < chars.len() {
        let ch = chars[idx];
        idx += 1;
        let peek = chars.get(idx).copied();
        if ch == '*' {
            if peek == Some('*') {
                idx += 1;
                // Treat "**/" as "**": eat the '/'.
                if chars.get(idx) == Some(&'/') {
                    idx += 1;
                }
                if idx >= chars.len() {
                    // "**" at the end accepts everything, as .gitignore does.
                    if detected == Detected::Exact {
                        detected = Detected::Prefix;
                    } else {
                        reg.push_str(".*");
                        detected = Detected::Regexp;
                    }
                } else {
                    // Any number of directories, including none.
                    reg.push_str("(.*/)?");
                    detected = Detected::Regexp;
                }
                if i == 0 {
                    detected = Detected::Suffix;
                }
            } else {
                reg.push_str("[^/]*");
                detected = Detected::Regexp;
            }
        } else if ch == '?' {
            reg.push_str("[^/]");
            detected = Detected::Regexp;
        } else if should_escape(ch) {
            reg.push('\\');
            reg.push(ch);
        } else if ch == '\\' {
            if let Some(next) = peek {
                idx += 1;
                reg.push('\\');
                reg.push(next);
                detected = Detected::Regexp;
            } else {
                reg.push('\\');
            }
        } else if ch == '[' || ch == ']' {
            reg.push(ch);
            detected = Detected::Regexp;
        } else {
            reg.push(ch);
        }
        i += 1;
    }
    let bytes = pattern.as_bytes();
    Ok(match detected {
        Detected::Exact => Kind::Exact,
        // Go slices the cleaned pattern by bytes; so do we.
        Detected::Prefix => Kind::Prefix(bytes[..bytes.len().saturating_sub(2)].to_vec()),
        Detected::Suffix => Kind::Suffix(bytes.get(2..).unwrap_or_default().to_vec()),
        Detected::Regexp => {
            reg.push('$');
            Kind::Regexp(re::Program::new(&reg)?)
        }
    })
}

/// Per-pattern results for a directory, handed to its children
/// (patternmatcher's `MatchInfo`, for `MatchesUsingParentResults`).
#[derive(Debug, Clone, Default)]
pub struct MatchInfo {
    parent_matched: Vec<bool>,
}

/// A compiled `.dockerignore` (patternmatcher's `PatternMatcher`).
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    source: Vec<String>,
    patterns: Vec<Pattern>,
    exclusions: bool,
}

impl Matcher {
    /// patternmatcher's `New`: trims, drops empty patterns, `filepath.Clean`s, strips `!`,
    /// and rejects patterns `filepath.Match` rejects. Unlike docker, a pattern whose regexp
    /// does not compile is rejected here rather than when the first path reaches it.
    pub fn new(patterns: &[String]) -> Result<Matcher, IgnoreError> {
        let mut m = Matcher {
            source: patterns.to_vec(),
            ..Matcher::default()
        };
        for raw in patterns {
            let p = raw.trim();
            if p.is_empty() {
                continue;
            }
            let cleaned = go_clean(p);
            let (exclusion, p) = match cleaned.strip_prefix('!') {
                Some("") => return Err(IgnoreError::IllegalExclusion),
                Some(rest) => (true, rest),
                None => (false, cleaned.as_str()),
            };
            if let Err(BadPattern) = go_match(p, ".") {
                return Err(IgnoreError::BadPattern(raw.clone()));
            }
            let kind = compile(p).map_err(|e| match e {
                re::Error::Syntax(why) => IgnoreError::BadPattern(format!("{raw} ({why})")),
                re::Error::Unsupported(what) => IgnoreError::Unsupported {
                    pattern: raw.clone(),
                    what,
                },
            })?;
            m.exclusions |= exclusion;
            m.patterns.push(Pattern {
                cleaned: p.to_string(),
                ndirs: p.split('/').count(),
                exclusion,
                kind,
            });
        }
        Ok(m)
    }

    /// The patterns this matcher was built from, as given.
    pub fn patterns(&self) -> &[String] {
        &self.source
    }

    /// Whether any pattern is an exception (`!...`).
    pub fn has_exclusions(&self) -> bool {
        self.exclusions
    }

    /// Whether `rel_path` ('/'-separated, relative to the context root) is excluded: the path
    /// or one of its parents matches, and no later exception re-includes it
    /// (patternmatcher's `MatchesOrParentMatches`, after docker's `filepath.Clean` and its
    /// "never exclude `.`" rule).
    pub fn is_excluded(&self, rel_path: &str) -> bool {
        let file = go_clean(rel_path);
        if file == "." {
            return false;
        }
        let parent = go_dir(&file);
        let parent_dirs: Vec<&str> = parent.split('/').collect();
        let mut matched = false;
        for pat in &self.patterns {
            // An inclusion cannot change an already excluded path, nor an exception an
            // included one.
            if pat.exclusion != matched {
                continue;
            }
            let mut m = pat.matches(&file);
            if !m && parent != "." {
                for i in 0..parent_dirs.len() {
                    if pat.matches(&parent_dirs[..=i].join("/")) {
                        m = true;
                        break;
                    }
                }
            }
            if m {
                matched = !pat.exclusion;
            }
        }
        matched
    }

    /// patternmatcher's `MatchesUsingParentResults`, as docker's context tar walk uses it:
    /// patterns the parent directory matched count as matched without being re-tested.
    /// Pass `MatchInfo::default()` for entries of the root directory; keep the returned
    /// info of a directory for its children. Can differ from [`Matcher::is_excluded`]
    /// (e.g. `dir/sub` then `!dir`: `dir/sub` stays excluded here).
    pub fn matches_using_parent_results(
        &self,
        rel_path: &str,
        parent: &MatchInfo,
    ) -> (bool, MatchInfo) {
        // Docker errors out on a wrong-length info; treat it as "no parent information".
        let parent_matched = if parent.parent_matched.len() == self.patterns.len() {
            parent.parent_matched.as_slice()
        } else {
            &[]
        };
        let mut info = MatchInfo {
            parent_matched: vec![false; self.patterns.len()],
        };
        let mut matched = false;
        for (i, pat) in self.patterns.iter().enumerate() {
            let mut m = parent_matched.get(i).copied().unwrap_or(false);
            if !m {
                if pat.exclusion != matched {
                    continue;
                }
                m = pat.matches(rel_path);
                // Without parent results, fall back to testing every parent.
                if !m && parent_matched.is_empty() {
                    let parent_path = go_dir(rel_path);
                    if parent_path != "." {
                        let dirs: Vec<&str> = parent_path.split('/').collect();
                        m = (0..dirs.len()).any(|j| pat.matches(&dirs[..=j].join("/")));
                    }
                }
            }
            info.parent_matched[i] = m;
            if m {
                matched = !pat.exclusion;
            }
        }
        (matched, info)
    }

    /// Whether a walk must still descend into the excluded directory `dir_rel` because an
    /// exception might re-include something below it. Docker's test is a plain string
    /// prefix on the exception's text (`!dir/keep` descends into `dir`; `!**/keep` does not).
    pub fn may_contain_exceptions(&self, dir_rel: &str) -> bool {
        if !self.exclusions {
            return false;
        }
        let dir_slash = format!("{dir_rel}/");
        self.patterns
            .iter()
            .filter(|p| p.exclusion)
            .any(|p| format!("{}/", p.cleaned).starts_with(&dir_slash))
    }

    /// The deprecated patternmatcher `Matches` (only checks the parent prefix with as many
    /// parts as the pattern), which docker still uses to decide whether the Dockerfile and
    /// `.dockerignore` need an exception.
    fn matches_legacy(&self, file: &str) -> bool {
        let file = go_clean(file);
        if file == "." {
            return false;
        }
        let parent = go_dir(&file);
        let parent_dirs: Vec<&str> = parent.split('/').collect();
        let mut matched = false;
        for pat in &self.patterns {
            if pat.exclusion != matched {
                continue;
            }
            let mut m = pat.matches(&file);
            if !m && parent != "." && pat.ndirs <= parent_dirs.len() {
                m = pat.matches(&parent_dirs[..pat.ndirs].join("/"));
            }
            if m {
                matched = !pat.exclusion;
            }
        }
        matched
    }

    /// docker/cli's `TrimBuildFilesFromExcludes`: the matcher used for the context tar, with
    /// `!.dockerignore` and `!<dockerfile>` appended when those files would be excluded, so
    /// they are always sent. `dockerfile_rel` is `None` when the Dockerfile is not taken from
    /// the context (stdin).
    pub fn keeping_build_files(
        &self,
        dockerfile_rel: Option<&str>,
    ) -> Result<Matcher, IgnoreError> {
        let mut patterns = self.source.clone();
        if self.matches_legacy(".dockerignore") {
            patterns.push("!.dockerignore".to_string());
        }
        if let Some(dockerfile) = dockerfile_rel {
            // docker's relative Dockerfile path is already clean ("./Dockerfile" would make an
            // exception that never matches).
            let dockerfile = go_clean(dockerfile);
            if Matcher::new(&patterns)?.matches_legacy(&dockerfile) {
                patterns.push(format!("!{dockerfile}"));
            }
        }
        Matcher::new(&patterns)
    }
}

/// The subset of Go's RE2 syntax (`regexp.Compile`, Perl flags) that patternmatcher's
/// translation can produce, run as a Pike VM (linear in the path length, like Go).
mod re {
    #[derive(Debug)]
    pub enum Error {
        /// Go's regexp would reject it too.
        Syntax(String),
        /// Go accepts it but it is not implemented here.
        Unsupported(String),
    }

    type Ranges = &'static [(u32, u32)];

    const DIGIT: Ranges = &[(0x30, 0x39)];
    const SPACE_PERL: Ranges = &[(9, 10), (12, 13), (32, 32)];
    const WORD: Ranges = &[(0x30, 0x39), (0x41, 0x5a), (0x5f, 0x5f), (0x61, 0x7a)];

    fn posix(name: &str) -> Option<Ranges> {
        Some(match name {
            "alnum" => &[(0x30, 0x39), (0x41, 0x5a), (0x61, 0x7a)],
            "alpha" => &[(0x41, 0x5a), (0x61, 0x7a)],
            "ascii" => &[(0, 0x7f)],
            "blank" => &[(9, 9), (32, 32)],
            "cntrl" => &[(0, 0x1f), (0x7f, 0x7f)],
            "digit" => DIGIT,
            "graph" => &[(0x21, 0x7e)],
            "lower" => &[(0x61, 0x7a)],
            "print" => &[(0x20, 0x7e)],
            "punct" => &[(0x21, 0x2f), (0x3a, 0x40), (0x5b, 0x60), (0x7b, 0x7e)],
            "space" => &[(9, 13), (32, 32)],
            "upper" => &[(0x41, 0x5a)],
            "word" => WORD,
            "xdigit" => &[(0x30, 0x39), (0x41, 0x46), (0x61, 0x66)],
            _ => return None,
        })
    }

    fn in_ranges(r: Ranges, c: u32) -> bool {
        r.iter().any(|&(lo, hi)| lo <= c && c <= hi)
    }

    #[derive(Debug, Clone)]
    enum Item {
        Range(u32, u32),
        In(Ranges),
        NotIn(Ranges),
    }

    #[derive(Debug, Clone)]
    enum Pred {
        Lit(u32),
        /// `.`: anything but '\n' (no `s` flag).
        AnyNotNl,
        Class {
            items: Vec<Item>,
            negated: bool,
        },
    }

    impl Pred {
        fn matches(&self, c: u32) -> bool {
            match self {
                Pred::Lit(l) => *l == c,
                Pred::AnyNotNl => c != '\n' as u32,
                Pred::Class { items, negated } => {
                    let hit = items.iter().any(|it| match it {
                        Item::Range(lo, hi) => *lo <= c && c <= *hi,
                        Item::In(r) => in_ranges(r, c),
                        Item::NotIn(r) => !in_ranges(r, c),
                    });
                    hit != *negated
                }
            }
        }
    }

    #[derive(Debug, Clone, Copy)]
    enum Assert {
        /// `^` (OneLine) and `\A`.
        BeginText,
        /// `$` (OneLine) and `\z`.
        EndText,
        WordBoundary,
        NotWordBoundary,
    }

    enum Node {
        Char(Pred),
        Assert(Assert),
        Group(Vec<Node>),
        Star(Box<Node>),
        Plus(Box<Node>),
        Quest(Box<Node>),
    }

    struct Parser {
        s: Vec<char>,
        pos: usize,
    }

    fn syntax(msg: &str) -> Error {
        Error::Syntax(msg.to_string())
    }

    fn unhex(c: char) -> Option<u32> {
        c.to_digit(16)
    }

    impl Parser {
        fn peek(&self) -> Option<char> {
            self.s.get(self.pos).copied()
        }

        fn at(&self, off: usize) -> Option<char> {
            self.s.get(self.pos + off).copied()
        }

        fn next(&mut self) -> Option<char> {
            let c = self.peek();
            if c.is_some() {
                self.pos += 1;
            }
            c
        }

        fn seq(&mut self, depth: usize) -> Result<Vec<Node>, Error> {
            let mut out: Vec<Node> = Vec::new();
            let mut last_repeat = false;
            while let Some(c) = self.peek() {
                let mut repeat = false;
                match c {
                    '(' => {
                        self.pos += 1;
                        if self.peek() == Some('?') {
                            return Err(Error::Unsupported("regexp flags or named groups".into()));
                        }
                        let inner = self.seq(depth + 1)?;
                        if self.next() != Some(')') {
                            return Err(syntax("missing closing )"));
                        }
                        out.push(Node::Group(inner));
                    }
                    ')' => {
                        if depth == 0 {
                            return Err(syntax("unexpected )"));
                        }
                        return Ok(out);
                    }
                    '|' => return Err(Error::Unsupported("alternation".into())),
                    '{' => return Err(Error::Unsupported("counted repetition".into())),
                    '^' => {
                        self.pos += 1;
                        out.push(Node::Assert(Assert::BeginText));
                    }
                    '$' => {
                        self.pos += 1;
                        out.push(Node::Assert(Assert::EndText));
                    }
                    '.' => {
                        self.pos += 1;
                        out.push(Node::Char(Pred::AnyNotNl));
                    }
                    '[' => {
                        let class = self.class()?;
                        out.push(Node::Char(class));
                    }
                    '*' | '+' | '?' => {
                        self.pos += 1;
                        // Perl syntax: "a**" is an error, not a doubled star.
                        if last_repeat {
                            return Err(syntax("invalid nested repetition operator"));
                        }
                        let sub = out
                            .pop()
                            .ok_or_else(|| syntax("missing argument to repetition operator"))?;
                        let sub = Box::new(sub);
                        out.push(match c {
                            '*' => Node::Star(sub),
                            '+' => Node::Plus(sub),
                            _ => Node::Quest(sub),
                        });
                        // Non-greedy marker; irrelevant for a yes/no match.
                        if self.peek() == Some('?') {
                            self.pos += 1;
                        }
                        repeat = true;
                    }
                    '\\' => match self.at(1) {
                        Some('A') => {
                            self.pos += 2;
                            out.push(Node::Assert(Assert::BeginText));
                        }
                        Some('z') => {
                            self.pos += 2;
                            out.push(Node::Assert(Assert::EndText));
                        }
                        Some('b') => {
                            self.pos += 2;
                            out.push(Node::Assert(Assert::WordBoundary));
                        }
                        Some('B') => {
                            self.pos += 2;
                            out.push(Node::Assert(Assert::NotWordBoundary));
                        }
                        Some('C') => return Err(syntax("invalid escape sequence: \\C")),
                        Some('Q') => {
                            // \Q...\E: everything up to \E (or the end) is literal.
                            self.pos += 2;
                            while self.pos < self.s.len() {
                                if self.peek() == Some('\\') && self.at(1) == Some('E') {
                                    self.pos += 2;
                                    break;
                                }
                                let c = self.s[self.pos];
                                self.pos += 1;
                                out.push(Node::Char(Pred::Lit(c as u32)));
                            }
                        }
                        Some('p' | 'P') => {
                            return Err(Error::Unsupported("Unicode class escape \\p / \\P".into()))
                        }
                        Some(k @ ('d' | 'D' | 's' | 'S' | 'w' | 'W')) => {
                            self.pos += 2;
                            out.push(Node::Char(Pred::Class {
                                items: vec![perl_class(k)],
                                negated: false,
                            }));
                        }
                        _ => {
                            let c = self.escape()?;
                            out.push(Node::Char(Pred::Lit(c)));
                        }
                    },
                    _ => {
                        self.pos += 1;
                        out.push(Node::Char(Pred::Lit(c as u32)));
                    }
                }
                last_repeat = repeat;
            }
            if depth > 0 {
                return Err(syntax("missing closing )"));
            }
            Ok(out)
        }

        /// Go's `parseEscape`, at a '\\'.
        fn escape(&mut self) -> Result<u32, Error> {
            self.pos += 1;
            let c = self
                .next()
                .ok_or_else(|| syntax("trailing backslash at end of expression"))?;
            if c.is_ascii() && !c.is_ascii_alphanumeric() {
                // Escaped punctuation is always itself.
                return Ok(c as u32);
            }
            let invalid = || syntax("invalid escape sequence");
            let octal = |c: Option<char>| c.filter(|d| ('0'..='7').contains(d));
            match c {
                '0'..='7' => {
                    // A lone non-zero digit would be a backreference, which RE2 lacks.
                    if c != '0' && octal(self.peek()).is_none() {
                        return Err(invalid());
                    }
                    let mut r = c as u32 - '0' as u32;
                    for _ in 1..3 {
                        match octal(self.peek()) {
                            Some(d) => {
                                r = r * 8 + (d as u32 - '0' as u32);
                                self.pos += 1;
                            }
                            None => break,
                        }
                    }
                    Ok(r)
                }
                'x' => {
                    let c = self.next().ok_or_else(invalid)?;
                    if c == '{' {
                        let mut r: u32 = 0;
                        let mut nhex = 0;
                        loop {
                            let c = self.next().ok_or_else(invalid)?;
                            if c == '}' {
                                break;
                            }
                            r = r * 16 + unhex(c).ok_or_else(invalid)?;
                            if r > 0x10ffff {
                                return Err(invalid());
                            }
                            nhex += 1;
                        }
                        if nhex == 0 {
                            return Err(invalid());
                        }
                        return Ok(r);
                    }
                    let x = unhex(c);
                    let y = self.next().and_then(unhex);
                    match (x, y) {
                        (Some(x), Some(y)) => Ok(x * 16 + y),
                        _ => Err(invalid()),
                    }
                }
                'a' => Ok(7),
                'f' => Ok(12),
                'n' => Ok(10),
                'r' => Ok(13),
                't' => Ok(9),
                'v' => Ok(11),
                _ => Err(invalid()),
            }
        }

        /// Go's `parseClass`, at a '['.
        fn class(&mut self) -> Result<Pred, Error> {
            self.pos += 1;
            let mut negated = false;
            if self.peek() == Some('^') {
                negated = true;
                self.pos += 1;
            }
            let mut items = Vec::new();
            let mut first = true;
            loop {
                let c = self.peek().ok_or_else(|| syntax("missing closing ]"))?;
                // ']' right after '[' or '[^' is a literal.
                if c == ']' && !first {
                    self.pos += 1;
                    break;
                }
                first = false;
                // POSIX class [:name:] or [:^name:]: Go looks for the next ":]" anywhere.
                if c == '[' && self.at(1) == Some(':') && self.pos + 2 < self.s.len() {
                    let rest = &self.s[self.pos + 2..];
                    if let Some(i) = rest.windows(2).position(|w| w == [':', ']']) {
                        let name: String = rest[..i].iter().collect();
                        let (neg, name) = match name.strip_prefix('^') {
                            Some(n) => (true, n.to_string()),
                            None => (false, name),
                        };
                        let ranges =
                            posix(&name).ok_or_else(|| syntax("invalid character class range"))?;
                        items.push(if neg {
                            Item::NotIn(ranges)
                        } else {
                            Item::In(ranges)
                        });
                        self.pos += 2 + i + 2;
                        continue;
                    }
                }
                if c == '\\' {
                    match self.at(1) {
                        Some('p' | 'P') => {
                            return Err(Error::Unsupported("Unicode class escape \\p / \\P".into()))
                        }
                        Some(k @ ('d' | 'D' | 's' | 'S' | 'w' | 'W')) => {
                            self.pos += 2;
                            items.push(perl_class(k));
                            continue;
                        }
                        _ => {}
                    }
                }
                let lo = self.class_char()?;
                let mut hi = lo;
                // "[a-]" means a or '-'.
                if self.peek() == Some('-') && self.at(1).is_some_and(|c| c != ']') {
                    self.pos += 1;
                    hi = self.class_char()?;
                    if hi < lo {
                        return Err(syntax("invalid character class range"));
                    }
                }
                items.push(Item::Range(lo, hi));
            }
            Ok(Pred::Class { items, negated })
        }

        fn class_char(&mut self) -> Result<u32, Error> {
            match self.peek() {
                None => Err(syntax("missing closing ]")),
                Some('\\') => self.escape(),
                Some(c) => {
                    self.pos += 1;
                    Ok(c as u32)
                }
            }
        }
    }

    fn perl_class(k: char) -> Item {
        match k {
            'd' => Item::In(DIGIT),
            'D' => Item::NotIn(DIGIT),
            's' => Item::In(SPACE_PERL),
            'S' => Item::NotIn(SPACE_PERL),
            'w' => Item::In(WORD),
            _ => Item::NotIn(WORD),
        }
    }

    #[derive(Debug, Clone)]
    enum Inst {
        Char(Pred),
        Split(usize, usize),
        Jmp(usize),
        Assert(Assert),
        Match,
    }

    /// A compiled expression.
    #[derive(Debug, Clone)]
    pub struct Program {
        insts: Vec<Inst>,
    }

    fn emit(node: Node, p: &mut Vec<Inst>) {
        match node {
            Node::Char(pred) => p.push(Inst::Char(pred)),
            Node::Assert(a) => p.push(Inst::Assert(a)),
            Node::Group(nodes) => nodes.into_iter().for_each(|n| emit(n, p)),
            Node::Star(sub) => {
                let l1 = p.len();
                p.push(Inst::Split(0, 0));
                emit(*sub, p);
                p.push(Inst::Jmp(l1));
                p[l1] = Inst::Split(l1 + 1, p.len());
            }
            Node::Plus(sub) => {
                let l1 = p.len();
                emit(*sub, p);
                p.push(Inst::Split(l1, p.len() + 1));
            }
            Node::Quest(sub) => {
                let l1 = p.len();
                p.push(Inst::Split(0, 0));
                emit(*sub, p);
                p[l1] = Inst::Split(l1 + 1, p.len());
            }
        }
    }

    fn is_word(c: Option<&u32>) -> bool {
        c.is_some_and(|&c| in_ranges(WORD, c))
    }

    impl Program {
        pub fn new(src: &str) -> Result<Program, Error> {
            let mut parser = Parser {
                s: src.chars().collect(),
                pos: 0,
            };
            let nodes = parser.seq(0)?;
            let mut insts = Vec::new();
            nodes.into_iter().for_each(|n| emit(n, &mut insts));
            insts.push(Inst::Match);
            Ok(Program { insts })
        }

        /// Whether the expression matches anywhere in `text` (Go's `MatchString`).
        pub fn is_match(&self, text: &str) -> bool {
            let text: Vec<u32> = text.chars().map(|c| c as u32).collect();
            let n = self.insts.len();
            let mut mark = vec![usize::MAX; n];
            let mut clist: Vec<usize> = Vec::with_capacity(n);
            let mut nlist: Vec<usize> = Vec::with_capacity(n);
            let mut stack: Vec<usize> = Vec::new();
            for pos in 0..=text.len() {
                // Unanchored search: a new thread may start at every position.
                if self.add(&mut clist, &mut mark, &mut stack, 0, pos, &text) {
                    return true;
                }
                let Some(&c) = text.get(pos) else { break };
                nlist.clear();
                for &pc in &clist {
                    if let Inst::Char(pred) = &self.insts[pc] {
                        if pred.matches(c)
                            && self.add(&mut nlist, &mut mark, &mut stack, pc + 1, pos + 1, &text)
                        {
                            return true;
                        }
                    }
                }
                std::mem::swap(&mut clist, &mut nlist);
            }
            false
        }

        /// Adds the thread at `pc` and everything reachable without consuming input;
        /// true if that reaches the match state. `mark` holds the position each
        /// instruction was last added at.
        fn add(
            &self,
            list: &mut Vec<usize>,
            mark: &mut [usize],
            stack: &mut Vec<usize>,
            pc: usize,
            pos: usize,
            text: &[u32],
        ) -> bool {
            stack.clear();
            stack.push(pc);
            let mut matched = false;
            while let Some(pc) = stack.pop() {
                if mark[pc] == pos {
                    continue;
                }
                mark[pc] = pos;
                match &self.insts[pc] {
                    Inst::Jmp(t) => stack.push(*t),
                    Inst::Split(a, b) => {
                        stack.push(*b);
                        stack.push(*a);
                    }
                    Inst::Assert(a) => {
                        let before = if pos == 0 { None } else { text.get(pos - 1) };
                        let holds = match a {
                            Assert::BeginText => pos == 0,
                            Assert::EndText => pos == text.len(),
                            Assert::WordBoundary => is_word(before) != is_word(text.get(pos)),
                            Assert::NotWordBoundary => is_word(before) == is_word(text.get(pos)),
                        };
                        if holds {
                            stack.push(pc + 1);
                        }
                    }
                    Inst::Match => matched = true,
                    Inst::Char(_) => list.push(pc),
                }
            }
            matched
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(patterns: &[&str]) -> Matcher {
        let v: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
        match Matcher::new(&v) {
            Ok(m) => m,
            Err(e) => panic!("{patterns:?}: {e}"),
        }
    }

    /// patternmatcher's TestMatches table (MatchesOrParentMatches and
    /// MatchesUsingParentResults must agree on all of it).
    #[test]
    fn patternmatcher_matches_table() {
        let tests: &[(&str, &str, bool)] = &[
            ("**", "file", true),
            ("**", "file/", true),
            ("**/", "file", true),
            ("**/", "file/", true),
            ("**", "/", true),
            ("**/", "/", true),
            ("**", "dir/file", true),
            ("**/", "dir/file", true),
            ("**", "dir/file/", true),
            ("**/", "dir/file/", true),
            ("**/**", "dir/file", true),
            ("**/**", "dir/file/", true),
            ("dir/**", "dir/file", true),
            ("dir/**", "dir/file/", true),
            ("dir/**", "dir/dir2/file", true),
            ("dir/**", "dir/dir2/file/", true),
            ("**/dir", "dir", true),
            ("**/dir", "dir/file", true),
            ("**/dir2/*", "dir/dir2/file", true),
            ("**/dir2/*", "dir/dir2/file/", true),
            ("**/dir2/**", "dir/dir2/dir3/file", true),
            ("**/dir2/**", "dir/dir2/dir3/file/", true),
            ("**file", "file", true),
            ("**file", "dir/file", true),
            ("**/file", "dir/file", true),
            ("**file", "dir/dir/file", true),
            ("**/file", "dir/dir/file", true),
            ("**/file*", "dir/dir/file", true),
            ("**/file*", "dir/dir/file.txt", true),
            ("**/file*txt", "dir/dir/file.txt", true),
            ("**/file*.txt", "dir/dir/file.txt", true),
            ("**/file*.txt*", "dir/dir/file.txt", true),
            ("**/**/*.txt", "dir/dir/file.txt", true),
            ("**/**/*.txt2", "dir/dir/file.txt", false),
            ("**/*.txt", "file.txt", true),
            ("**/**/*.txt", "file.txt", true),
            ("a**/*.txt", "a/file.txt", true),
            ("a**/*.txt", "a/dir/file.txt", true),
            ("a**/*.txt", "a/dir/dir/file.txt", true),
            ("a/*.txt", "a/dir/file.txt", false),
            ("a/*.txt", "a/file.txt", true),
            ("a/*.txt**", "a/file.txt", true),
            ("a[b-d]e", "ae", false),
            ("a[b-d]e", "ace", true),
            ("a[b-d]e", "aae", false),
            ("a[^b-d]e", "aze", true),
            (".*", ".foo", true),
            (".*", "foo", false),
            ("abc.def", "abcdef", false),
            ("abc.def", "abc.def", true),
            ("abc.def", "abcZdef", false),
            ("abc?def", "abcZdef", true),
            ("abc?def", "abcdef", false),
            ("a\\\\", "a\\", true),
            ("**/foo/bar", "foo/bar", true),
            ("**/foo/bar", "dir/foo/bar", true),
            ("**/foo/bar", "dir/dir2/foo/bar", true),
            ("abc/**", "abc", false),
            ("abc/**", "abc/def", true),
            ("abc/**", "abc/def/ghi", true),
            ("**/.foo", ".foo", true),
            ("**/.foo", "bar.foo", false),
            ("a(b)c/def", "a(b)c/def", true),
            ("a(b)c/def", "a(b)c/xyz", false),
            ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
            (
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
            (
                "dist/*.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
            ("a\\*b", "a*b", true),
        ];
        for &(pattern, text, pass) in tests {
            let pm = m(&[pattern]);
            // MatchesOrParentMatches does not clean its input; these texts are clean except
            // for trailing slashes, which only the "**" family sees and accepts anyway.
            assert_eq!(
                pm.is_excluded(text),
                pass,
                "pattern={pattern:?} text={text:?}"
            );
            assert_eq!(
                using_parent_results(&pm, text),
                pass,
                "parent results: pattern={pattern:?} text={text:?}"
            );
        }
        let multi: &[(&[&str], &str, bool)] = &[
            (&["**", "!util/docker/web"], "util/docker/web/foo", false),
            (
                &["**", "!util/docker/web", "util/docker/web/foo"],
                "util/docker/web/foo",
                true,
            ),
            (
                &[
                    "**",
                    "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                ],
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                false,
            ),
            (
                &["**", "!dist/*.whl"],
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                false,
            ),
        ];
        for &(patterns, text, pass) in multi {
            let pm = m(patterns);
            assert_eq!(
                pm.is_excluded(text),
                pass,
                "patterns={patterns:?} text={text:?}"
            );
            assert_eq!(
                using_parent_results(&pm, text),
                pass,
                "parent results: {patterns:?} {text:?}"
            );
        }
    }

    /// What docker's tar walk does: feed each parent's info to its children.
    fn using_parent_results(pm: &Matcher, text: &str) -> bool {
        let parent = go_dir(text);
        let mut info = MatchInfo::default();
        if parent != "." {
            let dirs: Vec<&str> = parent.split('/').collect();
            for i in 0..dirs.len() {
                info = pm
                    .matches_using_parent_results(&dirs[..=i].join("/"), &info)
                    .1;
            }
        }
        pm.matches_using_parent_results(text, &info).0
    }

    #[test]
    fn compile_kinds() {
        // patternmatcher's TestCompile, for the '/' separator.
        let cases: &[(&str, &str)] = &[
            ("*", "re"),
            ("file*", "re"),
            ("**", "suffix"),
            ("**/**", "re"),
            ("dir/**", "prefix"),
            ("**/dir", "suffix"),
            ("**/dir2/**", "re"),
            ("**file", "suffix"),
            ("a[b-d]e", "re"),
            (".*", "re"),
            ("abc.def", "exact"),
            ("abc?def", "re"),
            ("**/foo/bar", "suffix"),
            ("a(b)c/def", "exact"),
            ("a.|)$(}+{bc", "exact"),
        ];
        for &(p, want) in cases {
            let got = match compile(&go_clean(p)) {
                Ok(Kind::Exact) => "exact",
                Ok(Kind::Prefix(_)) => "prefix",
                Ok(Kind::Suffix(_)) => "suffix",
                Ok(Kind::Regexp(_)) => "re",
                Err(e) => panic!("{p}: {e:?}"),
            };
            assert_eq!(got, want, "{p}");
        }
    }

    #[test]
    fn regexp_quirks_match_go() {
        // In the regexp a class is a Go class: a negated class crosses '/'.
        assert!(m(&["a[^x]b"]).is_excluded("a/b"));
        // "**" not followed by '/' still means "(.*/)?" : "a**b" needs a '/' before b.
        assert!(m(&["a**b"]).is_excluded("ab"));
        assert!(m(&["a**b"]).is_excluded("ax/b"));
        assert!(!m(&["a**b"]).is_excluded("axb"));
        // "**foo" is a plain suffix test.
        assert!(m(&["**foo"]).is_excluded("xfoo"));
        // A backslash escape goes to the regexp as is: \d is a digit class there.
        assert!(m(&["f\\d"]).is_excluded("f1"));
        assert!(!m(&["f\\d"]).is_excluded("fd"));
        // '.' in the regexp does not match a newline.
        assert!(!m(&["a**/*.txt"]).is_excluded("a\n/b.txt"));
        // POSIX classes reach the regexp: "[[:digit:]]" is one digit.
        assert!(m(&["f[[:digit:]]"]).is_excluded("f7"));
        // '^' outside a class is an anchor in the regexp.
        assert!(!m(&["a^b*"]).is_excluded("a^b"));
        assert!(
            m(&["a^b"]).is_excluded("a^b"),
            "no regexp chars: exact match"
        );
    }

    #[test]
    fn invalid_patterns() {
        let bad = |p: &str| Matcher::new(&[p.to_string()]);
        assert!(matches!(bad("["), Err(IgnoreError::BadPattern(_))));
        assert!(matches!(bad("a/b["), Err(IgnoreError::BadPattern(_))));
        assert!(matches!(bad("!"), Err(IgnoreError::IllegalExclusion)));
        assert_eq!(
            bad("!").err().map(|e| e.to_string()).unwrap_or_default(),
            "illegal exclusion pattern: \"!\""
        );
        // Valid for filepath.Match, but "l-O" is a reversed range for the regexp
        // (moby/moby#52203): docker fails on first use, we fail up front.
        assert!(matches!(
            bad("[Local-Only]/"),
            Err(IgnoreError::BadPattern(_))
        ));
        // \e is not an escape Go's regexp knows.
        assert!(matches!(bad("a\\e"), Err(IgnoreError::BadPattern(_))));
        assert!(matches!(bad("a\\pL"), Err(IgnoreError::Unsupported { .. })));
        assert!(bad("  ").is_ok());
    }

    #[test]
    fn exceptions_and_order() {
        let pm = m(&["*.md", "!README.md"]);
        assert!(pm.is_excluded("CHANGES.md"));
        assert!(!pm.is_excluded("README.md"));
        assert!(!pm.is_excluded("docs/x.md"), "* does not cross /");
        assert!(pm.has_exclusions());

        // Later patterns win.
        let pm = m(&["!README.md", "*.md"]);
        assert!(pm.is_excluded("README.md"));

        let pm = m(&["dir", "!dir/keep"]);
        assert!(pm.is_excluded("dir"));
        assert!(pm.is_excluded("dir/other"));
        assert!(!pm.is_excluded("dir/keep"));
        assert!(!pm.is_excluded("dir/keep/deeper"));
        assert!(pm.may_contain_exceptions("dir"));
        assert!(!pm.may_contain_exceptions("dir/other"));
        assert!(!pm.may_contain_exceptions("di"));

        // Docker only looks at the exception's text as a prefix.
        let pm = m(&["dir", "!**/keep"]);
        assert!(!pm.may_contain_exceptions("dir"));
        assert!(!m(&["dir"]).may_contain_exceptions("dir"));
        assert!(!m(&["dir"]).has_exclusions());

        // Parent directories: "docs" excludes everything below it.
        let pm = m(&["docs"]);
        assert!(pm.is_excluded("docs/a/b.txt"));
        assert!(!pm.is_excluded("docsx/a"));
        assert!(!pm.is_excluded("."));
        assert!(!pm.is_excluded(""));
        // Cleaned like docker: "/foo" is "foo".
        let read = Matcher::new(&read_dockerignore("/foo\n")).unwrap_or_default();
        assert!(read.is_excluded("foo"));
        // patternmatcher.New alone keeps the slash (only ReadAll strips it).
        assert!(!m(&["/foo"]).is_excluded("foo"));
        assert!(m(&["foo/"]).is_excluded("foo/bar"));
    }

    #[test]
    fn parent_results_differ_from_or_parent_matches() {
        // MatchesOrParentMatches lets "!dir" re-include dir/sub via its parent;
        // docker's tar walk (parent results) keeps it excluded.
        let pm = m(&["dir/sub", "!dir"]);
        assert!(!pm.is_excluded("dir/sub"));
        assert!(using_parent_results(&pm, "dir/sub"));
    }

    #[test]
    fn legacy_matches_and_build_files() {
        // The legacy test only checks the parent with as many parts as the pattern.
        let pm = m(&["*/*"]);
        assert!(pm.is_excluded("a/b/c"));
        assert!(pm.matches_legacy("a/b/c"));
        let pm = m(&["a"]);
        assert!(pm.matches_legacy("a/b/c"));
        let pm = m(&["b"]);
        assert!(!pm.matches_legacy("a/b/c"));

        let pm = m(&["*", "!src"]);
        let kept = pm
            .keeping_build_files(Some("./Dockerfile"))
            .unwrap_or_default();
        assert_eq!(
            kept.patterns(),
            ["*", "!src", "!.dockerignore", "!Dockerfile"]
        );
        assert!(!kept.is_excluded("Dockerfile"));
        assert!(!kept.is_excluded(".dockerignore"));
        // Not excluded: no exception added.
        let pm = m(&["*.md"]);
        let kept = pm
            .keeping_build_files(Some("Dockerfile"))
            .unwrap_or_default();
        assert_eq!(kept.patterns(), ["*.md"]);
        // Dockerfile from stdin: only .dockerignore is kept.
        let pm = m(&["*"]);
        let kept = pm.keeping_build_files(None).unwrap_or_default();
        assert_eq!(kept.patterns(), ["*", "!.dockerignore"]);
    }

    #[test]
    fn read_all() {
        let content = "\u{feff}# comment\n\n  foo  \n/bar\n!/baz/../qux\n! spaced\n  # not a comment\r\n./a//b/\n!\n/\n";
        assert_eq!(
            read_dockerignore(content),
            [
                "foo",
                "bar",
                "!qux",
                "!spaced",
                "# not a comment",
                "a/b",
                "!",
                "/"
            ]
        );
        assert!(read_dockerignore("").is_empty());
        assert_eq!(read_dockerignore("a\r\nb"), ["a", "b"]);
    }

    #[test]
    fn clean() {
        let cases = [
            ("", "."),
            (".", "."),
            ("/", "/"),
            ("//a//b/", "/a/b"),
            ("a/./b/../c", "a/c"),
            ("../../a", "../../a"),
            ("/../a", "/a"),
            ("a/..", "."),
            ("a/../..", ".."),
            ("!foo/../bar", "bar"),
            ("abc/def/../../..", ".."),
        ];
        for (in_, want) in cases {
            assert_eq!(go_clean(in_), want, "{in_:?}");
        }
        assert_eq!(go_dir("a/b/c"), "a/b");
        assert_eq!(go_dir("a"), ".");
        assert_eq!(go_dir("/a"), "/");
    }

    #[test]
    fn regexp_engine() {
        let re = |s: &str| re::Program::new(s).map_err(|e| format!("{e:?}"));
        let ok = |s: &str, t: &str| re(s).map(|p| p.is_match(t));
        assert_eq!(ok("^(.*/)?(.*/)?[^/]*\\.txt$", "a/b/c.txt"), Ok(true));
        assert_eq!(ok("^(.*/)?(.*/)?[^/]*\\.txt$", "a/b/c.txt2"), Ok(false));
        assert_eq!(ok("^a\\x41\\101\\x{42}$", "aAAB"), Ok(true));
        assert_eq!(ok("^\\Qa.b$", "a.b$"), Ok(true));
        assert_eq!(ok("^a\\b", "a b"), Ok(true));
        assert_eq!(ok("^a\\b", "ab"), Ok(false));
        assert_eq!(ok("^[[:^alpha:]\\d]$", "1"), Ok(true));
        assert_eq!(ok("^[[:^alpha:]\\d]$", "x"), Ok(false));
        assert_eq!(ok("^[]a]$", "]"), Ok(true));
        assert_eq!(ok("^[a-]$", "-"), Ok(true));
        assert!(re("a**").is_err());
        assert!(re("*a").is_err());
        assert!(re("^[z-a]$").is_err());
        assert!(re("^(a$").is_err());
        assert!(re("^a)$").is_err());
        assert!(re("^[a$").is_err());
        assert!(re("^\\8$").is_err());
        assert!(re("^\\1$").is_err());
        // Many stars stay linear.
        let p = "^".to_string() + &"[^/]*a".repeat(30) + "$";
        assert_eq!(ok(&p, &"a".repeat(29)), Ok(false));
    }
}
