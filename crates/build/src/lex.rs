//! Docker's shell-word processing for Dockerfiles: quote removal, escapes and `$VAR`
//! substitution, a port of buildkit's `frontend/dockerfile/shell/lex.go` (ProcessWord /
//! ProcessWords). It is not a shell: no command substitution, no globbing of paths.

use std::cell::RefCell;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LexError(pub String);

/// Docker's word lexer. The public switches mirror buildkit's `Lex` fields; the parser uses
/// them to find heredoc delimiters and to expand heredoc bodies.
#[derive(Debug, Clone)]
pub struct Lexer {
    escape: char,
    /// Keep quote characters in the output (they still group words).
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Leave references to unset variables as written (`$X`, `${X:-y}`).
    pub skip_unset_env: bool,
    /// Treat quotes as ordinary characters (heredoc bodies).
    pub skip_process_quotes: bool,
}

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Lexer {
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset_env: false,
            skip_process_quotes: false,
        }
    }

    pub fn escape(&self) -> char {
        self.escape
    }

    /// One word: quotes removed, escapes processed, variables substituted.
    pub fn process_word(&self, word: &str, env: Env) -> Result<String, LexError> {
        self.run(word, env).map(|(w, _, _)| w)
    }

    /// Like `process_word`, then split on unquoted whitespace (whitespace coming from a
    /// variable's value splits too, as in buildkit).
    pub fn process_words(&self, word: &str, env: Env) -> Result<Vec<String>, LexError> {
        self.run(word, env).map(|(_, ws, _)| ws)
    }

    /// Names of the variables `word` refers to, in order of first use. Every name is
    /// looked up as set and non-empty, so `${X:?}` and friends never stop the scan.
    pub fn vars_used(&self, word: &str) -> Vec<String> {
        let any = |_: &str| Some("x".to_string());
        let mut sw = ShellWord::new(self, word, &any);
        let _ = sw.process_stop_on(None, self.raw_escapes);
        sw.seen.into_inner()
    }

    fn run(&self, word: &str, env: Env) -> Result<(String, Vec<String>, Vec<String>), LexError> {
        let mut sw = ShellWord::new(self, word, env);
        match sw.process_stop_on(None, self.raw_escapes) {
            Ok((w, ws)) => Ok((w, ws, sw.seen.into_inner())),
            Err(e) => Err(LexError(format!("failed to process {word:?}: {e}"))),
        }
    }
}

/// buildkit's wordsStruct: accumulates words, splitting on whitespace added with `add_char`.
#[derive(Default)]
struct Words {
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() && self.in_word {
            if !self.buf.is_empty() {
                self.words.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else if !ch.is_whitespace() {
            self.add_raw_char(ch);
        }
    }
    fn add_raw_char(&mut self, ch: char) {
        self.buf.push(ch);
        self.in_word = true;
    }
    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }
    fn add_raw_string(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_word = true;
    }
    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(std::mem::take(&mut self.buf));
        }
        self.words
    }
}

struct ShellWord<'a> {
    lex: &'a Lexer,
    chars: Vec<char>,
    pos: usize,
    env: Env<'a>,
    raw_escapes: bool,
    seen: RefCell<Vec<String>>,
}

type R<T> = Result<T, String>;

impl<'a> ShellWord<'a> {
    fn new(lex: &'a Lexer, word: &str, env: Env<'a>) -> Self {
        ShellWord {
            lex,
            chars: word.chars().collect(),
            pos: 0,
            env,
            raw_escapes: lex.raw_escapes,
            seen: RefCell::new(Vec::new()),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn get_env(&self, name: &str) -> Option<String> {
        let mut seen = self.seen.borrow_mut();
        if !seen.iter().any(|n| n == name) {
            seen.push(name.to_string());
        }
        (self.env)(name)
    }

    /// Process up to `stop` (consumed) or the end of input; `raw_escapes` applies to this
    /// span only (buildkit keeps escapes raw inside `${x#pat}` and `${x/a/b}` patterns).
    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> R<(String, Vec<String>)> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let r = self.stop_on(stop);
        self.raw_escapes = saved;
        r
    }

    fn stop_on(&mut self, stop: Option<char>) -> R<(String, Vec<String>)> {
        let mut result = String::new();
        let mut words = Words::default();
        let quotes = !self.lex.skip_process_quotes;
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let tmp = self.process_dollar()?;
                    result.push_str(&tmp);
                    words.add_string(&tmp);
                }
                '<' | '\'' | '"' if ch == '<' || quotes => {
                    let tmp = match ch {
                        '<' => self.process_possible_heredoc(),
                        '\'' => self.process_single_quote()?,
                        _ => self.process_double_quote()?,
                    };
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                _ => {
                    self.next();
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        // The escape char escapes the next one, except at the end of input.
                        let Some(c) = self.next() else { break };
                        words.add_raw_char(c);
                        result.push(c);
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        if let Some(s) = stop {
            return Err(format!(
                "unexpected end of statement while looking for matching {s}"
            ));
        }
        Ok((result, words.finish()))
    }

    fn process_single_quote(&mut self) -> R<String> {
        // Everything up to the next ' is literal; ' cannot be escaped inside.
        let mut out = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            out.extend(open);
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    )
                }
                Some('\'') => {
                    if self.lex.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> R<String> {
        // Literal except $ and the escape char, which escapes only " $ and itself.
        let mut out = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            out.extend(open);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    )
                }
                Some('"') => {
                    self.next();
                    if self.lex.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => out.push_str(&self.process_dollar()?),
                Some(mut ch) => {
                    self.next();
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            out.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == self.lex.escape => {
                                self.next();
                                ch = c;
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(ch);
                }
            }
        }
    }

    fn process_possible_heredoc(&mut self) -> String {
        // `<<` plus any blanks after it stay glued to the delimiter word.
        self.next();
        if self.peek() != Some('<') {
            return "<".into();
        }
        self.next();
        let mut out = String::from("<<");
        while let Some(c @ ('\t' | '\r' | ' ')) = self.peek() {
            out.push(c);
            self.next();
        }
        out
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_numeric() {
                // Positional parameter: all the digits.
                while let Some(c) = self.peek().filter(|c| c.is_numeric()) {
                    name.push(c);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !ch.is_alphabetic() && !ch.is_numeric() && ch != '_' {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }

    fn process_dollar(&mut self) -> R<String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            _ => {}
        }
        let name = self.process_name();
        // Go's scanner yields EOF (-1) here, printed as U+FFFD.
        let ch = self.next().unwrap_or('\u{FFFD}');
        let mut chs = ch.to_string();
        match ch {
            '}' => Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let null_is_unset = ch == ':';
                let mut op = ch;
                if null_is_unset {
                    op = self.next().unwrap_or('\u{FFFD}');
                    chs.push(op);
                }
                let raw = op == '#' || op == '%';
                if null_is_unset && raw {
                    return Err(format!("unsupported modifier ({chs}) in substitution"));
                }
                let mut word = self.stop_on_brace('}', raw, "syntax error: missing '}'")?;
                let value = self.get_env(&name);
                if self.lex.skip_unset_env && value.is_none() {
                    return Ok(format!("${{{name}{chs}{word}}}"));
                }
                let empty = value
                    .as_deref()
                    .is_none_or(|v| null_is_unset && v.is_empty());
                match op {
                    '-' => Ok(if empty {
                        word
                    } else {
                        value.unwrap_or_default()
                    }),
                    '+' => Ok(if empty { String::new() } else { word }),
                    '?' => match value {
                        None => Err(format!(
                            "{name}: {}",
                            or(word, "is not allowed to be unset")
                        )),
                        Some(v) if null_is_unset && v.is_empty() => Err(format!(
                            "{name}: {}",
                            or(word, "is not allowed to be empty")
                        )),
                        Some(v) => Ok(v),
                    },
                    '%' | '#' => {
                        // %/# remove the shortest match, %%/## the longest.
                        let greedy = word.starts_with(op);
                        if greedy {
                            word.remove(0);
                        }
                        let toks = compile_pattern(&word)?;
                        let v: Vec<char> = value.unwrap_or_default().chars().collect();
                        Ok(if op == '#' {
                            let cut = pick(&reach(&toks, &v, 0), greedy).unwrap_or(0);
                            v[cut..].iter().collect()
                        } else {
                            // Match the reversed pattern against the reversed value.
                            let rt: Vec<Tok> = toks.into_iter().rev().collect();
                            let rv: Vec<char> = v.iter().rev().copied().collect();
                            let cut = pick(&reach(&rt, &rv, 0), greedy).unwrap_or(0);
                            v[..v.len() - cut].iter().collect()
                        })
                    }
                    _ => Err(format!("unsupported modifier ({chs}) in substitution")),
                }
            }
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.next();
                }
                let pattern = self.stop_on_brace('/', true, "syntax error: missing '/' in ${}")?;
                let repl = self.stop_on_brace('}', true, "syntax error: missing '}'")?;
                let value = self.get_env(&name);
                if self.lex.skip_unset_env && value.is_none() {
                    return Ok(format!("${{{name}/{pattern}/{repl}}}"));
                }
                let toks = compile_pattern(&pattern)?;
                let v: Vec<char> = value.unwrap_or_default().chars().collect();
                Ok(replace(&toks, &v, &repl, all))
            }
            _ => Err(format!("unsupported modifier ({chs}) in substitution")),
        }
    }

    fn stop_on_brace(&mut self, stop: char, raw: bool, eof_msg: &str) -> R<String> {
        match self.process_stop_on(Some(stop), raw) {
            Ok((w, _)) => Ok(w),
            Err(_) if self.peek().is_none() => Err(eof_msg.into()),
            Err(e) => Err(e),
        }
    }
}

fn or(word: String, default: &str) -> String {
    if word.is_empty() {
        default.into()
    } else {
        word
    }
}

/// A shell pattern token (`*`, `?`, literal); no bracket expressions, as buildkit.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok {
    Lit(char),
    Any,
    Star,
}

fn compile_pattern(p: &str) -> R<Vec<Tok>> {
    let chars: Vec<char> = p.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' => out.push(Tok::Star),
            '?' => out.push(Tok::Any),
            '\\' => {
                // `\}` and `\/` only protect the ${} syntax; the backslash is not pattern.
                if matches!(chars.get(i), Some('}' | '/')) {
                    continue;
                }
                match chars.get(i) {
                    Some(&e @ ('*' | '?' | '\\')) => {
                        out.push(Tok::Lit(e));
                        i += 1;
                    }
                    other => {
                        let e = other.map(|c| c.to_string()).unwrap_or_default();
                        return Err(format!(
                            "invalid pattern ({p}) in substitution: invalid escape '\\{e}'"
                        ));
                    }
                }
            }
            _ => out.push(Tok::Lit(c)),
        }
    }
    Ok(out)
}

/// End positions `e` such that `v[start..e]` matches the whole pattern. Like Go's regexp
/// `.`, wildcards do not match a newline.
fn reach(toks: &[Tok], v: &[char], start: usize) -> Vec<bool> {
    let n = v.len();
    let mut r = vec![false; n + 1];
    r[start] = true;
    for t in toks {
        let mut nr = vec![false; n + 1];
        match *t {
            Tok::Lit(c) => (0..n)
                .filter(|&p| r[p] && v[p] == c)
                .for_each(|p| nr[p + 1] = true),
            Tok::Any => (0..n)
                .filter(|&p| r[p] && v[p] != '\n')
                .for_each(|p| nr[p + 1] = true),
            Tok::Star => {
                let mut carry = false;
                for q in 0..=n {
                    carry |= r[q];
                    nr[q] = carry;
                    if q < n && v[q] == '\n' {
                        carry = false;
                    }
                }
            }
        }
        r = nr;
    }
    r
}

fn pick(ends: &[bool], longest: bool) -> Option<usize> {
    let mut it = ends.iter().enumerate().filter(|(_, &b)| b).map(|(i, _)| i);
    if longest {
        it.next_back()
    } else {
        it.next()
    }
}

/// Leftmost, longest match at or after `from`.
fn find_at(toks: &[Tok], v: &[char], from: usize) -> Option<(usize, usize)> {
    (from..=v.len()).find_map(|s| pick(&reach(toks, v, s), true).map(|e| (s, e)))
}

/// `${x/pat/repl}` and `${x//pat/repl}`, with Go's ReplaceAllString stepping rules.
fn replace(toks: &[Tok], v: &[char], repl: &str, all: bool) -> String {
    let s = |a: usize, b: usize| v[a..b].iter().collect::<String>();
    if !all {
        return match find_at(toks, v, 0) {
            Some((a, b)) => format!("{}{repl}{}", s(0, a), s(b, v.len())),
            None => s(0, v.len()),
        };
    }
    let (mut out, mut last, mut search) = (String::new(), 0, 0);
    while search <= v.len() {
        let Some((a, b)) = find_at(toks, v, search) else {
            break;
        };
        out.push_str(&s(last, a));
        // No replacement for an empty match right after a previous match.
        if b > last || a == 0 {
            out.push_str(repl);
        }
        last = b;
        search = if search + 1 > b { search + 1 } else { b };
    }
    out.push_str(&s(last, v.len()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `env ~ input ~ expected` lines (env: space-separated K=V, `-` for none;
    /// expected `error` for a failure, words joined with `,` when `words`; `·` is a space).
    fn table(lex: &Lexer, cases: &str, words: bool) {
        for line in cases.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let parts: Vec<&str> = line.split(" ~ ").collect();
            let [env, input, want] = parts[..] else {
                panic!("bad case {line}")
            };
            let sp = |s: &str| s.replace('·', " ");
            let (input, want) = (sp(input), sp(want));
            let pairs: Vec<(&str, &str)> =
                env.split(' ').filter_map(|kv| kv.split_once('=')).collect();
            let env = |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| sp(v));
            let got = if words {
                lex.process_words(&input, &env).map(|w| w.join(","))
            } else {
                lex.process_word(&input, &env)
            };
            match (&want[..], got) {
                ("error", Err(_)) => {}
                (w, Ok(g)) if w != "error" => assert_eq!(g, w.trim_matches('«'), "{input}"),
                (w, g) => panic!("{input}: want {w:?}, got {g:?}"),
            }
        }
    }

    const E: &str = "PWD=/home SHELL=bash KOREAN=한국어 NULL=";

    #[test]
    fn buildkit_env_var_cases() {
        // From buildkit's shell/envVarTest and lex_test.go; `«` marks an empty result.
        let cases = r#"
            - ~ he'll'o ~ hello
            - ~ he'llo ~ error
            - ~ he\'llo ~ he'llo
            - ~ he\\'llo ~ error
            - ~ abc\tdef ~ abctdef
            - ~ "abc\tdef" ~ abc\tdef
            - ~ "abc\\tdef" ~ abc\tdef
            - ~ 'abc\tdef' ~ abc\tdef
            - ~ hello\ ~ hello
            - ~ hello\\ ~ hello\
            - ~ "hello ~ error
            - ~ "hello\" ~ error
            - ~ 'hello\' ~ hello\
            - ~ "''" ~ ''
            - ~ $. ~ $.
            - ~ he$1x ~ hex
            PWD=/home ~ he$pwd. ~ he.
            PWD=/home ~ he\\$PWD ~ he\/home
            PWD=/home ~ "he\$PWD" ~ he$PWD
            - ~ \${} ~ ${}
            - ~ ${} ~ error
            - ~ he${}xx ~ error
            - ~ he${hi}xx ~ hexx
            - ~ he${.} ~ error
            PWD=/home ~ he${XXX:-${PWD:-yyy}}xx ~ he/homexx
            - ~ he${XXX:-${YYY:-yyy}}xx ~ heyyyxx
            - ~ he${XXX:YYY} ~ error
            - ~ he${XXX?} ~ error
            - ~ he${XXX:?} ~ error
            PWD=/home ~ he${PWD:?} ~ he/home
            NULL= ~ he${NULL?} ~ he
            NULL= ~ he${NULL:?} ~ error
            PWD=/home SHELL=bash ~ he${PWD:+${SHELL}}xx ~ hebashxx
            - ~ he${XXX:+000}xx ~ hexx
            - ~ 'he${XX}' ~ he${XX}
            PWD=/home ~ "he'$PWD'" ~ he'/home'
            - ~ '\$PWD' ~ \$PWD
            - ~ he${PWD ~ error
            PWD=/home ~ he${PWD:=000}xx ~ error
            PWD=/home ~ he${PWD:+${PWD}:}xx ~ he/home:xx
            - ~ he${XXX:-\$PWD:}xx ~ he$PWD:xx
            - ~ he${XXX:-\${PWD}z}xx ~ he${PWDz}xx
            KOREAN=한국어 ~ 안녕$KOREAN ~ 안녕한국어
            - ~ 안'녕'하세요 ~ 안녕하세요
            - ~ ${aaa}} ~ }
            - ~ ${{aaa} ~ error
            - ~ ${aaa:-bbb ${foo} ~ error
            - ~ ${aaa:-bbb {foo} ~ bbb {foo
            - ~ ${:-bbb} ~ error
            - ~ ${999:-bbb}aaa ~ bbbaaa
            - ~ $001aaa ~ aaa
            - ~ $@@@ ~ @@
            - ~ ${#:-bbb} ~ bbb
            - ~ $$ ~ «
            FOO=()[]{}^$.*?|\x ~ ${FOO#()[]{\}^$.\*\?|\\} ~ x
            FOO=xx** ~ ${FOO%%\**} ~ xx
            FOO=xxyy ~ ${FOO#*x*y} ~ y
            FOO=xxyy ~ ${FOO#*} ~ xxyy
            FOO=xxyy BAR=x ~ ${FOO#$BAR} ~ xyy
            FOO=xxyy ~ ${FOO##*x} ~ yy
            FOO=???y ~ ${FOO#?\?} ~ ?y
            FOO=xxyy ~ ${ABC:-.}${FOO%x}${ABC:-.} ~ .xxyy.
            FOO=a***yy* ~ ${FOO%%\**\*} ~ a
            FOO=xxyy ~ ${FOO%y} ~ xxy
            FOO=xxyy ~ ${FOO%%y*} ~ xx
            - ~ ${FOO:#} ~ error
            - ~ ${FOO:%%} ~ error
            FOO=x ~ ${FOO#\x} ~ error
            FOO=/foo*/*/*.txt N=\*/ ~ ${FOO/$N/.} - ${FOO//$N/.} ~ /foo.*/*.txt - /foo..*.txt
            FOO=/tmp/tmp/bar.txt N=/tmp ~ ${FOO/$N/} - ${FOO//$N/} ~ /tmp/bar.txt - /bar.txt
            FOO=/a/foo/b/c.txt N=/?/ R=/ ~ ${FOO/$N/$R} - ${FOO//$N/$R} ~ /foo/b/c.txt - /foo/c.txt
            FOO=/tmp/foo.txt ~ ${FOO//\//\/} ~ \/tmp\/foo.txt
            FOO=xxyy BAR= ~ ${FOO/$BAR/ww} ~ wwxxyy
            FOO=xxyy ~ ${FOO//ww} ~ error
            FOO=xxyy ~ ${FOO///} ~ xxyy
            FOO=aXbXc ~ ${FOO//X/-} ~ a-b-c
        "#;
        table(&Lexer::new('\\'), cases, false);
        table(
            &Lexer::new('\\'),
            &format!("{E} ~ he$PWD$KOREAN ~ he/home한국어"),
            false,
        );
        let e = Lexer::new('\\').process_word("${VAR:?message here$ARG}", &|k: &str| {
            (k == "ARG").then(|| "x".to_string())
        });
        assert!(e.unwrap_err().0.contains("VAR: message herex"));
    }

    #[test]
    fn words_split_like_buildkit() {
        // From buildkit's shell/wordsTest (words joined with `,`).
        let cases = r#"
            hi=hi ~ hello${hi}bye ~ hellohibye
            space=abc··def ~ hello${space}bye ~ helloabc,defbye
            space=abc··def ~ hello"${space}"bye ~ helloabc··defbye
            space=abc··def ~ hello "${space}"bye ~ hello,abc··defbye
            leading=··ab·c ~ hello${leading}def ~ hello,ab,cdef
            leading=··ab·c ~ hello"${leading}" def ~ hello··ab·c,def
            trailing=ab·c··· ~ hello${trailing}d ~ helloab,c,d
            trailing=ab·c··· ~ hel"lo${trailing}" ~ helloab·c···
            - ~ hello there····· ~ hello,there
            - ~ hello\ there ~ hello·there
            - ~ hello" there ~ error
            - ~ hello\" there ~ hello",there
            - ~ hello'\\there' ~ hello\\there
            - ~ hello'$there' ~ hello$there
            - ~ 80/tcp ${NOPE} 443 ~ 80/tcp,443
            - ~ "" ~ «
        "#;
        table(&Lexer::new('\\'), cases, true);
    }

    #[test]
    fn backtick_escape_and_raw_modes() {
        let none = |_: &str| None;
        let lex = Lexer::new('`');
        assert_eq!(
            lex.process_word("c:\\dir`$X` y", &none).unwrap(),
            "c:\\dir$X y"
        );
        let mut raw = Lexer::new('\\');
        (raw.raw_quotes, raw.raw_escapes, raw.skip_unset_env) = (true, true, true);
        let words = raw.process_words("RUN cat <<'EOF' \"a b\" $X ${Y:-z} a\\ b", &none);
        let want = ["RUN", "cat", "<<'EOF'", "\"a b\"", "$X", "${Y:-z}", "a\\ b"];
        assert_eq!(words.unwrap(), want);
        assert_eq!(raw.process_words("<< EOF", &none).unwrap(), ["<< EOF"]);
        let mut heredoc = Lexer::new('\\');
        heredoc.skip_process_quotes = true;
        let e = |k: &str| (k == "A").then(|| "1".to_string());
        let body = heredoc.process_word("'$A' \"${A}\" \\$A\n", &e).unwrap();
        assert_eq!(body, "'1' \"1\" $A\n");
    }

    #[test]
    fn vars_used_lists_every_reference() {
        let lex = Lexer::new('\\');
        let used = lex.vars_used("$A ${B:-$C} '$D' \"${E}\" ${F#$G} \\$H ${A}");
        assert_eq!(used, ["A", "C", "B", "E", "G", "F"]);
        assert_eq!(lex.vars_used("${X:?}"), ["X"]);
        assert!(lex.vars_used("plain").is_empty());
    }
}
