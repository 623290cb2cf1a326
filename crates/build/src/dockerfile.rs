//! Dockerfile parsing: a port of buildkit's `frontend/dockerfile/parser` (lines,
//! continuations, parser directives, heredocs) and `instructions/parse.go` (typed
//! instructions, `--flags`, error messages), so berth accepts and rejects what docker does.

use crate::lex::{LexError, Lexer};

#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {msg}")]
pub struct ParseError {
    pub file: String,
    pub line: usize,
    pub msg: String,
}

#[derive(Debug, Clone)]
pub struct Dockerfile {
    /// From the `# escape=` directive, default `\`.
    pub escape: char,
    /// The `# syntax=` directive (ignored by the builder).
    pub syntax: Option<String>,
    /// ARGs before the first FROM.
    pub meta_args: Vec<ArgDecl>,
    pub stages: Vec<Stage>,
}

impl Dockerfile {
    /// A lexer using this file's escape character.
    pub fn lexer(&self) -> Lexer {
        Lexer::new(self.escape)
    }
}

#[derive(Debug, Clone)]
pub struct Stage {
    /// `AS name`, lowercased as docker does.
    pub name: Option<String>,
    /// Raw image word, expanded later against the meta args (`expand_from`).
    pub base: String,
    /// Raw `--platform` value.
    pub platform: Option<String>,
    pub line: usize,
    pub original: String,
    pub instructions: Vec<Instruction>,
}

#[derive(Debug, Clone)]
pub struct Instruction {
    /// 1-based line where the instruction starts.
    pub line: usize,
    /// Source text with line continuations removed, trimmed (docker's "Step n/m : ...").
    pub original: String,
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ShellOrExec {
    Shell(String),
    Exec(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Heredoc {
    pub name: String,
    /// The body exactly as written (each line keeps its newline); see `data()`.
    pub content: String,
    /// The delimiter was unquoted, so `$VAR` in the body is expanded.
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from body lines.
    pub chomp: bool,
}

impl Heredoc {
    /// The body with leading tabs removed when `chomp` is set.
    pub fn data(&self) -> String {
        if self.chomp {
            chomp(&self.content)
        } else {
            self.content.clone()
        }
    }
}

fn chomp(s: &str) -> String {
    s.split_inclusive('\n')
        .map(|l| l.trim_start_matches('\t'))
        .collect()
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct CopyArgs {
    /// Raw source words, heredoc sources excluded (they are in `heredocs`).
    pub sources: Vec<String>,
    pub dest: String,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub keep_git_dir: bool,
    pub checksum: Option<String>,
    pub exclude: Vec<String>,
    /// Heredoc sources (`COPY <<EOF /dest`), in source order.
    pub heredocs: Vec<Heredoc>,
    /// ADD `--unpack[=bool]`, None when not given.
    pub unpack: Option<bool>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCmd {
    /// `["CMD", args...]` or `["CMD-SHELL", cmd]`, docker's Healthcheck.Test.
    pub test: Vec<String>,
    /// Nanoseconds; None when not given (or zero, docker's "use the default").
    pub interval: Option<i64>,
    pub timeout: Option<i64>,
    pub start_period: Option<i64>,
    pub start_interval: Option<i64>,
    pub retries: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Run {
        cmd: ShellOrExec,
        heredocs: Vec<Heredoc>,
        network: Option<String>,
        mounts: Vec<String>,
        security: Option<String>,
    },
    Cmd(ShellOrExec),
    Entrypoint(ShellOrExec),
    Label(Vec<(String, String)>),
    Expose(Vec<String>),
    Env(Vec<(String, String)>),
    Copy(CopyArgs),
    Add(CopyArgs),
    Volume(Vec<String>),
    User(String),
    Workdir(String),
    Arg(Vec<ArgDecl>),
    Onbuild(String),
    Stopsignal(String),
    Healthcheck(Option<HealthCmd>),
    Shell(Vec<String>),
    Maintainer(String),
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::Run { .. } => "RUN",
            Command::Cmd(_) => "CMD",
            Command::Entrypoint(_) => "ENTRYPOINT",
            Command::Label(_) => "LABEL",
            Command::Expose(_) => "EXPOSE",
            Command::Env(_) => "ENV",
            Command::Copy(_) => "COPY",
            Command::Add(_) => "ADD",
            Command::Volume(_) => "VOLUME",
            Command::User(_) => "USER",
            Command::Workdir(_) => "WORKDIR",
            Command::Arg(_) => "ARG",
            Command::Onbuild(_) => "ONBUILD",
            Command::Stopsignal(_) => "STOPSIGNAL",
            Command::Healthcheck(_) => "HEALTHCHECK",
            Command::Shell(_) => "SHELL",
            Command::Maintainer(_) => "MAINTAINER",
        }
    }

    /// Variable substitution on the fields docker expands before dispatching (every word
    /// against the same `env`: the state before this instruction). RUN, CMD, ENTRYPOINT,
    /// SHELL, HEALTHCHECK, ONBUILD and MAINTAINER are returned unchanged. COPY/ADD heredoc
    /// bodies come back chomped (and `chomp` cleared) and, when `expand`, substituted.
    pub fn expand(
        &self,
        lex: &Lexer,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Command, LexError> {
        let w = |s: &String| lex.process_word(s, env);
        let opt = |s: &Option<String>| s.as_ref().map(w).transpose();
        let pairs = |p: &[(String, String)]| -> Result<Vec<_>, LexError> {
            p.iter().map(|(k, v)| Ok((w(k)?, w(v)?))).collect()
        };
        let copy = |c: &CopyArgs| -> Result<CopyArgs, LexError> {
            // buildkit expands heredoc bodies with a `\` lexer that keeps quotes.
            let mut body = Lexer::new('\\');
            body.skip_process_quotes = true;
            let heredocs = c
                .heredocs
                .iter()
                .map(|h| {
                    let data = h.data();
                    let content = if h.expand {
                        body.process_word(&data, env)?
                    } else {
                        data
                    };
                    Ok(Heredoc {
                        content,
                        chomp: false,
                        ..h.clone()
                    })
                })
                .collect::<Result<_, LexError>>()?;
            Ok(CopyArgs {
                sources: c.sources.iter().map(w).collect::<Result<_, _>>()?,
                dest: w(&c.dest)?,
                from: opt(&c.from)?,
                chown: opt(&c.chown)?,
                chmod: opt(&c.chmod)?,
                checksum: opt(&c.checksum)?,
                heredocs,
                ..c.clone()
            })
        };
        Ok(match self {
            Command::Env(p) => Command::Env(pairs(p)?),
            Command::Label(p) => Command::Label(pairs(p)?),
            Command::Expose(ports) => {
                let mut out = Vec::new();
                for p in ports {
                    out.extend(lex.process_words(p, env)?);
                }
                Command::Expose(out)
            }
            Command::Volume(v) => Command::Volume(v.iter().map(w).collect::<Result<_, _>>()?),
            Command::User(s) => Command::User(w(s)?),
            Command::Workdir(s) => Command::Workdir(w(s)?),
            Command::Stopsignal(s) => Command::Stopsignal(w(s)?),
            Command::Arg(a) => Command::Arg(
                a.iter()
                    .map(|d| {
                        Ok(ArgDecl {
                            name: d.name.clone(),
                            default: opt(&d.default)?,
                        })
                    })
                    .collect::<Result<_, LexError>>()?,
            ),
            Command::Copy(c) => Command::Copy(copy(c)?),
            Command::Add(c) => Command::Add(copy(c)?),
            other => other.clone(),
        })
    }
}

/// The stage's base image and platform expanded against the meta args, with buildkit's
/// errors for values that expand to nothing.
pub fn expand_from(
    stage: &Stage,
    lex: &Lexer,
    meta: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, Option<String>), LexError> {
    let base = lex.process_word(&stage.base, meta)?;
    if base.is_empty() {
        return Err(LexError(format!(
            "base name ({}) should not be blank",
            stage.base
        )));
    }
    let platform = match &stage.platform {
        Some(p) => {
            let v = lex.process_word(p, meta)?;
            if v.is_empty() {
                return Err(LexError(format!(
                    "empty platform value from expression {p}"
                )));
            }
            Some(v)
        }
        None => None,
    };
    Ok((base, platform))
}

// ---------------------------------------------------------------------------------------
// Lines, directives, continuations, heredocs (buildkit parser/parser.go)

/// One logical line after dispatch to its argument parser (buildkit's `Node`).
#[derive(Debug, Default)]
struct Node {
    cmd: String,
    flags: Vec<String>,
    args: Vec<String>,
    json: bool,
    original: String,
    heredocs: Vec<Heredoc>,
    line: usize,
    /// ONBUILD's trigger.
    sub: Option<Box<Node>>,
}

impl Node {
    fn can_contain_heredoc(&self) -> bool {
        let n = match &self.sub {
            Some(s) if self.cmd.eq_ignore_ascii_case("onbuild") => s,
            _ => self,
        };
        ["add", "copy", "run"]
            .iter()
            .any(|c| n.cmd.eq_ignore_ascii_case(c))
            && !n.json
    }
}

/// Parser directives: `# key=value` lines at the very top, before anything else.
struct Directives {
    done: bool,
    seen: Vec<String>,
    escape: char,
    syntax: Option<String>,
}

/// Go regexp `\s`.
fn is_re_s(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ')
}

/// buildkit's reWhitespace `[\t\v\f\r ]`.
fn is_re_ws(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

impl Directives {
    fn parse_line(&mut self, line: &str) -> Result<(), String> {
        if self.done {
            return Ok(());
        }
        let Some((key, value)) = directive(line) else {
            self.done = true;
            return Ok(());
        };
        let key = key.to_ascii_lowercase();
        if !["syntax", "escape", "check"].contains(&key.as_str()) {
            self.done = true;
            return Ok(());
        }
        if self.seen.contains(&key) {
            return Err(format!("only one {key} parser directive can be used"));
        }
        self.seen.push(key.clone());
        match key.as_str() {
            "escape" if value == "`" || value == "\\" => {
                self.escape = value.chars().next().unwrap_or('\\')
            }
            "escape" => {
                return Err(format!(
                    "invalid escape token '{value}' does not match ` or \\"
                ))
            }
            "syntax" => self.syntax = Some(value.to_string()),
            _ => {}
        }
        Ok(())
    }
}

/// `#` then `^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$` as buildkit's directive regexp.
fn directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('#')?.trim_start();
    let klen = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    let key = &rest[..klen];
    if !key.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let value = rest[klen..]
        .trim_start_matches(is_re_s)
        .strip_prefix('=')?
        .trim_matches(is_re_s);
    (!value.is_empty()).then_some((key, value))
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Strip the newline (and leading whitespace on an instruction's first line), feed the
/// directive parser, and blank out comments.
fn process_line(d: &mut Directives, raw: &str, strip_left: bool) -> Result<String, String> {
    let mut t = raw.trim_end_matches(['\r', '\n']);
    if strip_left {
        t = t.trim_start();
    }
    d.parse_line(t)?;
    Ok(if is_comment(t) {
        String::new()
    } else {
        t.to_string()
    })
}

/// buildkit's continuation regexp `([^E])E[ \t]*$|^E[ \t]*$`: returns the line without the
/// escape and whether the logical line ends here. An escaped escape (`\\`) is no continuation.
fn trim_continuation(line: &str, esc: char) -> (String, bool) {
    if let Some(before) = line.trim_end_matches([' ', '\t']).strip_suffix(esc) {
        if before.is_empty() {
            return (String::new(), false);
        }
        if !before.ends_with(esc) {
            return (before.to_string(), false);
        }
    }
    (line.to_string(), true)
}

pub fn parse(file: &str, src: &str) -> Result<Dockerfile, ParseError> {
    let err = |line: usize, msg: String| ParseError {
        file: file.to_string(),
        line,
        msg,
    };
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    let lines: Vec<&str> = src.split_inclusive('\n').collect();
    let mut d = Directives {
        done: false,
        seen: Vec::new(),
        escape: '\\',
        syntax: None,
    };
    let mut nodes = Vec::new();
    let (mut i, mut current) = (0, 0);
    while i < lines.len() {
        let body = process_line(&mut d, lines[i], true).map_err(|m| err(current + 1, m))?;
        i += 1;
        current += 1;
        let start = current;
        let (mut buf, mut eol) = trim_continuation(&body, d.escape);
        if eol && buf.is_empty() {
            continue;
        }
        while !eol && i < lines.len() {
            let raw = lines[i];
            let body = process_line(&mut d, raw, false).map_err(|m| err(current + 1, m))?;
            i += 1;
            current += 1;
            // Comment lines and empty lines inside a continuation are dropped.
            if is_comment(raw) || body.trim_start().is_empty() {
                continue;
            }
            let (b, e) = trim_continuation(&body, d.escape);
            buf.push_str(&b);
            eol = e;
        }
        let mut node = parse_line(&buf, d.escape).map_err(|m| err(start, m))?;
        node.line = start;
        if node.can_contain_heredoc() && buf.contains("<<") {
            for mut doc in heredocs_from_line(&buf).map_err(|m| err(start, m))? {
                let mut terminated = false;
                while i < lines.len() {
                    let raw = lines[i];
                    i += 1;
                    current += 1;
                    let mut t = raw.trim_end_matches(['\r', '\n']);
                    if doc.chomp {
                        t = t.trim_start_matches('\t');
                    }
                    if t == doc.name {
                        terminated = true;
                        break;
                    }
                    doc.content.push_str(raw);
                }
                if !terminated {
                    return Err(err(start, "unterminated heredoc".into()));
                }
                node.heredocs.push(doc);
            }
        }
        nodes.push(node);
    }
    if nodes.is_empty() {
        return Err(err(current.max(1), "file with no instructions".into()));
    }

    let mut df = Dockerfile {
        escape: d.escape,
        syntax: d.syntax,
        meta_args: Vec::new(),
        stages: Vec::new(),
    };
    for n in &nodes {
        let parsed = to_instruction(n).map_err(|m| err(n.line, m))?;
        match (parsed, df.stages.last_mut()) {
            (Parsed::From(stage), _) => df.stages.push(stage),
            (Parsed::Cmd(Command::Arg(args)), None) => df.meta_args.extend(args),
            (Parsed::Cmd(_), None) => {
                return Err(err(n.line, "no build stage in current context".into()))
            }
            (Parsed::Cmd(command), Some(stage)) => stage.instructions.push(Instruction {
                line: n.line,
                original: n.original.trim().to_string(),
                command,
            }),
        }
    }
    Ok(df)
}

/// Heredoc delimiters on an instruction line: words of the form `[n]<<[-]WORD`.
fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, String> {
    let mut lex = Lexer::new('\\');
    lex.raw_quotes = true;
    lex.raw_escapes = true;
    lex.skip_unset_env = true;
    // As buildkit: a line the lexer cannot split has no heredocs.
    let words = lex.process_words(line, &|_| None).unwrap_or_default();
    let mut docs = Vec::new();
    for w in words {
        docs.extend(parse_heredoc(&w)?);
    }
    Ok(docs)
}

/// buildkit's `^(\d*)<<(-?)\s*([^<]*)$` plus its quote test: a delimiter with any quoted
/// part disables expansion of the body.
fn parse_heredoc(src: &str) -> Result<Option<Heredoc>, String> {
    let Some(rest) = src
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .strip_prefix("<<")
    else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start_matches(is_re_s);
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let mut lex = Lexer::new('\\');
    lex.skip_unset_env = true;
    let words = lex.process_words(rest, &|_| None).map_err(|e| e.0)?;
    if words.len() != 1 {
        return Ok(None);
    }
    lex.raw_quotes = true;
    let raw = lex.process_words(rest, &|_| None).map_err(|e| e.0)?;
    if raw.len() != 1 {
        return Err(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        ));
    }
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    let name = words.into_iter().next().unwrap_or_default();
    let expand = quotes(&name) == quotes(&raw[0]);
    Ok(Some(Heredoc {
        name,
        content: String::new(),
        expand,
        chomp,
    }))
}

// ---------------------------------------------------------------------------------------
// Argument parsers (buildkit parser/line_parsers.go, split_command.go)

fn parse_line(line: &str, esc: char) -> Result<Node, String> {
    let (cmd, flags, rest) = split_command(line, esc);
    let mut n = Node {
        cmd,
        flags,
        original: line.to_string(),
        ..Node::default()
    };
    match n.cmd.to_ascii_lowercase().as_str() {
        "add" | "copy" | "volume" => match parse_json(&rest)? {
            Some(a) => (n.args, n.json) = (a, true),
            None => n.args = split_ws(&rest),
        },
        "cmd" | "entrypoint" | "run" | "shell" => (n.args, n.json) = maybe_json(&rest)?,
        "arg" => n.args = parse_words(&rest, esc),
        "env" => n.args = name_val(&rest, "ENV", esc)?,
        "label" => n.args = name_val(&rest, "LABEL", esc)?,
        "expose" | "from" => n.args = split_ws(&rest),
        "healthcheck" => {
            // First word is the type (CMD / NONE), the rest is maybe-JSON.
            let sep = rest.find(char::is_whitespace).unwrap_or(rest.len());
            if sep > 0 {
                let (args, json) = maybe_json(rest[sep..].trim_start())?;
                n.args = std::iter::once(rest[..sep].to_string())
                    .chain(args)
                    .collect();
                n.json = json;
            }
        }
        "maintainer" | "stopsignal" | "user" | "workdir" if !rest.is_empty() => n.args = vec![rest],
        "onbuild" if !rest.is_empty() => {
            let sub = parse_line(&rest, esc)?;
            n.args = std::iter::once(sub.cmd.clone())
                .chain(sub.args.iter().cloned())
                .collect();
            n.sub = Some(Box::new(sub));
        }
        _ => {}
    }
    Ok(n)
}

/// Instruction word, leading `--flags` (quotes and escapes processed), remaining text.
fn split_command(line: &str, esc: char) -> (String, Vec<String>, String) {
    let t = line.trim();
    match t.find(is_re_ws) {
        None => (t.to_string(), Vec::new(), String::new()),
        Some(i) => {
            let (flags, rest) = scan_words(t[i..].trim_start_matches(is_re_ws), esc, true);
            (t[..i].to_string(), flags, rest.trim().to_string())
        }
    }
}

/// buildkit's two word scanners. `flags` (extractBuilderFlags): leading `--flag` words with
/// quotes and escapes removed, plus the text after them. Otherwise (parseWords, for
/// ENV/LABEL/ARG): all words, quotes and escapes kept for expansion to remove later.
fn scan_words(s: &str, esc: char, flags: bool) -> (Vec<String>, String) {
    let c: Vec<char> = s.chars().collect();
    let rest = |p: usize| c[p..].iter().collect::<String>();
    let (mut words, mut buf, mut quote) = (Vec::new(), String::new(), None::<char>);
    let (mut in_word, mut blank_ok, mut pos) = (false, false, 0);
    loop {
        let Some(&ch) = c.get(pos) else {
            if in_word && (blank_ok || !buf.is_empty()) && !(flags && buf == "--") {
                words.push(buf);
            }
            return (words, String::new());
        };
        pos += 1;
        if !in_word {
            if ch.is_whitespace() {
                continue;
            }
            if flags && (ch != '-' || c.get(pos) != Some(&'-')) {
                return (words, rest(pos - 1));
            }
            in_word = true;
        }
        match quote {
            None if ch.is_whitespace() => {
                if flags && buf == "--" {
                    return (words, rest(pos - 1));
                }
                if blank_ok || !buf.is_empty() {
                    words.push(std::mem::take(&mut buf));
                }
                (in_word, blank_ok) = (false, false);
                continue;
            }
            None if ch == '\'' || ch == '"' => {
                (quote, blank_ok) = (Some(ch), true);
                if flags {
                    continue;
                }
            }
            Some(q) if ch == q => {
                quote = None;
                if flags {
                    continue;
                }
            }
            _ => {}
        }
        // parseWords cannot escape inside single quotes; an escape at the end is dropped.
        if ch == esc && (flags || quote != Some('\'')) {
            let Some(&next) = c.get(pos) else {
                quote = None;
                continue;
            };
            if !flags {
                buf.push(ch);
            }
            buf.push(next);
            pos += 1;
            continue;
        }
        buf.push(ch);
    }
}

fn parse_words(rest: &str, esc: char) -> Vec<String> {
    scan_words(rest, esc, false).0
}

/// ENV/LABEL arguments as (name, value, delimiter) triples: `k=v k2=v2` or the old
/// `k the rest of the line`.
fn name_val(rest: &str, key: &str, esc: char) -> Result<Vec<String>, String> {
    let words = parse_words(rest, esc);
    let Some(first) = words.first() else {
        return Ok(Vec::new());
    };
    if !first.contains('=') {
        let i = rest
            .find(is_re_ws)
            .ok_or_else(|| format!("{key} must have two arguments"))?;
        let value = rest[i..].trim_start_matches(is_re_ws);
        return Ok(vec![
            rest[..i].to_string(),
            value.to_string(),
            String::new(),
        ]);
    }
    let mut out = Vec::new();
    for w in &words {
        let (k, v) = w.split_once('=').ok_or_else(|| {
            format!("Syntax error - can't find = in {w:?}. Must be of the form: name=value")
        })?;
        out.extend([k.to_string(), v.to_string(), "=".to_string()]);
    }
    Ok(out)
}

fn split_ws(rest: &str) -> Vec<String> {
    rest.split(is_re_ws)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// A JSON array of strings; Ok(None) when the text is not JSON (shell form), an error for
/// an array holding anything but strings.
fn parse_json(rest: &str) -> Result<Option<Vec<String>>, String> {
    let t = rest.trim_start();
    if !t.starts_with('[') {
        return Ok(None);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(t) else {
        return Ok(None);
    };
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(
                "when using JSON array syntax, arrays must be comprised of strings only"
                    .to_string(),
            ),
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

fn maybe_json(rest: &str) -> Result<(Vec<String>, bool), String> {
    if rest.is_empty() {
        return Ok((Vec::new(), false));
    }
    Ok(match parse_json(rest)? {
        Some(a) => (a, true),
        None => (vec![rest.to_string()], false),
    })
}

// ---------------------------------------------------------------------------------------
// Typed instructions (buildkit instructions/parse.go, bflag.go)

enum Parsed {
    From(Stage),
    Cmd(Command),
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Bool,
    Str,
    Strs,
}

/// Parsed `--flags`: name -> values given (one for Bool/Str, any number for Strs).
struct Flags(Vec<(&'static str, Vec<String>)>);

impl Flags {
    fn parse(args: &[String], defs: &[(&'static str, Kind)]) -> Result<Flags, String> {
        let mut used: Vec<(&'static str, Vec<String>)> = Vec::new();
        for a in args {
            if a == "--" {
                break;
            }
            let Some(body) = a.strip_prefix("--") else {
                return Err(format!("arg should start with -- : {a}"));
            };
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let Some(&(key, kind)) = defs.iter().find(|(k, _)| *k == name) else {
                return Err(format!("unknown flag: --{name}"));
            };
            let slot = match used.iter().position(|(k, _)| *k == key) {
                Some(_) if kind != Kind::Strs => {
                    return Err(format!("duplicate flag specified: --{name}"))
                }
                Some(p) => p,
                None => {
                    used.push((key, Vec::new()));
                    used.len() - 1
                }
            };
            let v = match (kind, value) {
                (Kind::Bool, Some("")) | (Kind::Str | Kind::Strs, None) => {
                    return Err(format!("missing a value on flag: --{name}"))
                }
                (Kind::Bool, v) => match v.unwrap_or("").to_ascii_lowercase().as_str() {
                    "true" | "" => "true".to_string(),
                    "false" => "false".to_string(),
                    _ => {
                        return Err(format!(
                            "expecting boolean value for flag --{name}, not: {}",
                            v.unwrap_or("")
                        ))
                    }
                },
                (_, Some(v)) => v.to_string(),
            };
            used[slot].1.push(v);
        }
        Ok(Flags(used))
    }
    /// The value given, even empty; None when the flag was not used.
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.last())
            .map(String::as_str)
    }
    /// A string flag, with an empty value meaning unset (buildkit's "" default).
    fn string(&self, name: &str) -> Option<String> {
        self.get(name).filter(|v| !v.is_empty()).map(String::from)
    }
    fn bool(&self, name: &str) -> bool {
        self.get(name) == Some("true")
    }
    fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}

fn at_least_one(cmd: &str) -> String {
    format!("{cmd} requires at least one argument")
}

fn exactly_one(args: &[String], cmd: &str) -> Result<String, String> {
    match args {
        [a] => Ok(a.clone()),
        _ => Err(format!("{cmd} requires exactly one argument")),
    }
}

fn shell_or_exec(args: &[String], json: bool) -> ShellOrExec {
    if json {
        ShellOrExec::Exec(args.to_vec())
    } else {
        ShellOrExec::Shell(args.join(" "))
    }
}

fn to_instruction(n: &Node) -> Result<Parsed, String> {
    let args = &n.args;
    let no_flags = |n: &Node| Flags::parse(&n.flags, &[]).map(|_| ());
    let cmd = match n.cmd.to_ascii_lowercase().as_str() {
        "from" => return parse_from(n).map(Parsed::From),
        "env" => {
            no_flags(n)?;
            Command::Env(kvps(args, "ENV")?)
        }
        "label" => {
            no_flags(n)?;
            Command::Label(kvps(args, "LABEL")?)
        }
        "maintainer" => {
            let m = exactly_one(args, "MAINTAINER")?;
            no_flags(n)?;
            Command::Maintainer(m)
        }
        "workdir" => {
            let w = exactly_one(args, "WORKDIR")?;
            no_flags(n)?;
            Command::Workdir(w)
        }
        "user" => {
            let u = exactly_one(args, "USER")?;
            no_flags(n)?;
            Command::User(u)
        }
        // buildkit parses no flags for STOPSIGNAL and ARG.
        "stopsignal" => Command::Stopsignal(exactly_one(args, "STOPSIGNAL")?),
        "arg" => Command::Arg(parse_arg(args)?),
        "copy" => Command::Copy(parse_copy(n, false)?),
        "add" => Command::Add(parse_copy(n, true)?),
        "run" => parse_run(n)?,
        "cmd" => {
            no_flags(n)?;
            Command::Cmd(shell_or_exec(args, n.json))
        }
        "entrypoint" => {
            no_flags(n)?;
            Command::Entrypoint(shell_or_exec(args, n.json))
        }
        "healthcheck" => Command::Healthcheck(parse_healthcheck(n)?),
        "expose" => {
            if args.is_empty() {
                return Err(at_least_one("EXPOSE"));
            }
            no_flags(n)?;
            let mut ports = args.clone();
            ports.sort();
            Command::Expose(ports)
        }
        "volume" => {
            if args.is_empty() {
                return Err(at_least_one("VOLUME"));
            }
            no_flags(n)?;
            let vols: Vec<String> = args.iter().map(|v| v.trim().to_string()).collect();
            if vols.iter().any(String::is_empty) {
                return Err("VOLUME specified can not be an empty string".into());
            }
            Command::Volume(vols)
        }
        "shell" => {
            no_flags(n)?;
            if args.is_empty() {
                return Err(at_least_one("SHELL"));
            }
            if !n.json {
                return Err("SHELL requires the arguments to be in JSON form".into());
            }
            Command::Shell(args.clone())
        }
        "onbuild" => Command::Onbuild(parse_onbuild(n)?),
        _ => return Err(format!("unknown instruction: {}", n.cmd.to_uppercase())),
    };
    Ok(Parsed::Cmd(cmd))
}

fn kvps(args: &[String], cmd: &str) -> Result<Vec<(String, String)>, String> {
    if args.is_empty() {
        return Err(at_least_one(cmd));
    }
    if !args.chunks_exact(3).remainder().is_empty() {
        return Err(format!("Bad input to {cmd}, too many arguments"));
    }
    args.chunks(3)
        .map(|t| {
            if t[0].is_empty() {
                return Err(format!("{cmd} names can not be blank"));
            }
            Ok((t[0].clone(), t[1].clone()))
        })
        .collect()
}

fn parse_arg(args: &[String]) -> Result<Vec<ArgDecl>, String> {
    if args.is_empty() {
        return Err(at_least_one("ARG"));
    }
    args.iter()
        .map(|a| match a.split_once('=') {
            Some(("", _)) => Err("ARG names can not be blank".to_string()),
            Some((k, v)) => Ok(ArgDecl {
                name: k.to_string(),
                default: Some(v.to_string()),
            }),
            None => Ok(ArgDecl {
                name: a.clone(),
                default: None,
            }),
        })
        .collect()
}

fn parse_from(n: &Node) -> Result<Stage, String> {
    let a = &n.args;
    let name = match a.len() {
        3 if a[1].eq_ignore_ascii_case("as") => {
            let s = a[2].to_lowercase();
            let valid = s.starts_with(|c: char| c.is_ascii_lowercase())
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
            if !valid {
                return Err(format!(
                    "invalid name for build stage: {:?}, name can't start with a number or contain symbols",
                    a[2]
                ));
            }
            Some(s)
        }
        1 => None,
        _ => return Err("FROM requires either one or three arguments".into()),
    };
    let f = Flags::parse(&n.flags, &[("platform", Kind::Str)])?;
    Ok(Stage {
        name,
        base: a[0].clone(),
        platform: f.string("platform"),
        line: n.line,
        original: n.original.trim().to_string(),
        instructions: Vec::new(),
    })
}

fn parse_copy(n: &Node, add: bool) -> Result<CopyArgs, String> {
    let cmd = if add { "ADD" } else { "COPY" };
    if n.args.len() < 2 {
        return Err(format!(
            "{cmd} requires at least two arguments, but only one was provided. Destination could not be determined"
        ));
    }
    use Kind::*;
    let defs: &[(&str, Kind)] = if add {
        &[
            ("chown", Str),
            ("chmod", Str),
            ("link", Bool),
            ("keep-git-dir", Bool),
            ("checksum", Str),
            ("unpack", Bool),
            ("exclude", Strs),
        ]
    } else {
        &[
            ("chown", Str),
            ("from", Str),
            ("chmod", Str),
            ("link", Bool),
            ("exclude", Strs),
            ("parents", Bool),
        ]
    };
    let f = Flags::parse(&n.flags, defs)?;
    let (srcs, dest) = n.args.split_at(n.args.len() - 1);
    if matches!(parse_heredoc(&dest[0]), Ok(Some(_))) {
        return Err(format!("{cmd} cannot accept a heredoc as a destination"));
    }
    let mut out = CopyArgs {
        dest: dest[0].clone(),
        from: f.string("from"),
        chown: f.string("chown"),
        chmod: f.string("chmod"),
        link: f.bool("link"),
        parents: f.bool("parents"),
        keep_git_dir: f.bool("keep-git-dir"),
        checksum: f.string("checksum"),
        exclude: f.all("exclude"),
        unpack: f.get("unpack").map(|v| v == "true"),
        ..CopyArgs::default()
    };
    for s in srcs {
        match parse_heredoc(s) {
            Ok(Some(h)) => {
                // The body comes from the line's heredoc of that name (the last one wins).
                let content = n
                    .heredocs
                    .iter()
                    .rev()
                    .find(|d| d.name == h.name)
                    .map(|d| d.content.clone());
                out.heredocs.push(Heredoc {
                    content: content.unwrap_or_default(),
                    ..h
                });
            }
            _ => out.sources.push(s.clone()),
        }
    }
    Ok(out)
}

fn parse_run(n: &Node) -> Result<Command, String> {
    let f = Flags::parse(
        &n.flags,
        &[
            ("mount", Kind::Strs),
            ("network", Kind::Str),
            ("security", Kind::Str),
        ],
    )?;
    let network = f.get("network").map(String::from);
    if let Some(v) = network
        .as_deref()
        .filter(|v| !["default", "none", "host"].contains(v))
    {
        return Err(format!("invalid network mode {v:?}"));
    }
    let security = f.get("security").map(String::from);
    if let Some(v) = security
        .as_deref()
        .filter(|v| !["insecure", "sandbox"].contains(v))
    {
        return Err(format!("security {v:?} is not valid"));
    }
    Ok(Command::Run {
        cmd: shell_or_exec(&n.args, n.json),
        heredocs: n.heredocs.clone(),
        network,
        mounts: f.all("mount"),
        security,
    })
}

fn parse_healthcheck(n: &Node) -> Result<Option<HealthCmd>, String> {
    let Some((typ, rest)) = n.args.split_first() else {
        return Err(at_least_one("HEALTHCHECK"));
    };
    let typ = typ.to_uppercase();
    if typ == "NONE" {
        if !rest.is_empty() {
            return Err("HEALTHCHECK NONE takes no arguments".into());
        }
        return Ok(None);
    }
    let s = Kind::Str;
    let f = Flags::parse(
        &n.flags,
        &[
            ("interval", s),
            ("timeout", s),
            ("start-period", s),
            ("start-interval", s),
            ("retries", s),
        ],
    )?;
    if typ != "CMD" {
        return Err(format!("Unknown type {typ:?} in HEALTHCHECK (try CMD)"));
    }
    if rest.is_empty() {
        return Err("Missing command after HEALTHCHECK CMD".into());
    }
    let mut test = vec![if n.json { "CMD" } else { "CMD-SHELL" }.to_string()];
    match shell_or_exec(rest, n.json) {
        ShellOrExec::Exec(a) => test.extend(a),
        ShellOrExec::Shell(s) => test.push(s),
    }
    let interval = |name: &str| -> Result<Option<i64>, String> {
        let Some(v) = f.get(name).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        match go_duration(v)? {
            0 => Ok(None),
            d if d < 1_000_000 => Err(format!("Interval {name:?} cannot be less than 1ms")),
            d => Ok(Some(d)),
        }
    };
    let retries = match f.get("retries").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => {
            let r: i64 = v
                .parse()
                .map_err(|_| format!("strconv.ParseInt: parsing {v:?}: invalid syntax"))?;
            if i32::try_from(r).is_err() {
                return Err(format!(
                    "strconv.ParseInt: parsing {v:?}: value out of range"
                ));
            }
            if r < 0 {
                return Err(format!("--retries cannot be negative ({r})"));
            }
            Some(r)
        }
    };
    Ok(Some(HealthCmd {
        test,
        interval: interval("interval")?,
        timeout: interval("timeout")?,
        start_period: interval("start-period")?,
        start_interval: interval("start-interval")?,
        retries,
    }))
}

fn parse_onbuild(n: &Node) -> Result<String, String> {
    let Some(trigger) = n.args.first() else {
        return Err(at_least_one("ONBUILD"));
    };
    Flags::parse(&n.flags, &[])?;
    let trigger = trigger.trim().to_uppercase();
    match trigger.as_str() {
        "ONBUILD" => return Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into()),
        "MAINTAINER" | "FROM" => {
            return Err(format!("{trigger} isn't allowed as an ONBUILD trigger"))
        }
        _ => {}
    }
    // The original line minus `ONBUILD`, with heredoc bodies re-attached.
    let t = n.original.trim_start_matches(is_re_s);
    let mut expr = match t.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("onbuild") => {
            t[7..].trim_start_matches(is_re_s).to_string()
        }
        _ => n.original.clone(),
    };
    for h in &n.heredocs {
        expr.push('\n');
        expr.push_str(&h.content);
        expr.push_str(&h.name);
    }
    Ok(expr)
}

/// Go's `time.ParseDuration`, in nanoseconds.
fn go_duration(orig: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {orig:?}");
    let (neg, mut s) = match orig.strip_prefix(['-', '+']) {
        Some(r) => (orig.starts_with('-'), r),
        None => (false, orig),
    };
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        if !s.starts_with(|c: char| c == '.' || c.is_ascii_digit()) {
            return Err(invalid());
        }
        let int_len = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let int: u128 = if int_len > 0 {
            s[..int_len].parse().map_err(|_| invalid())?
        } else {
            0
        };
        s = &s[int_len..];
        let mut frac = (0u128, 1u128);
        let mut has_frac = false;
        if let Some(r) = s.strip_prefix('.') {
            let flen = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            // Digits past u64 precision do not change the result.
            for d in r[..flen].bytes().take(18) {
                frac = (frac.0 * 10 + u128::from(d - b'0'), frac.1 * 10);
            }
            has_frac = flen > 0;
            s = &r[flen..];
        }
        if int_len == 0 && !has_frac {
            return Err(invalid());
        }
        let ulen = s
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if ulen == 0 {
            return Err(format!("time: missing unit in duration {orig:?}"));
        }
        let unit: u128 = match &s[..ulen] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            u => return Err(format!("time: unknown unit {u:?} in duration {orig:?}")),
        };
        s = &s[ulen..];
        total += int.checked_mul(unit).ok_or_else(invalid)? + frac.0 * unit / frac.1;
        if total > 1 << 63 {
            return Err(invalid());
        }
    }
    if neg {
        return Ok(-(total as i128) as i64);
    }
    i64::try_from(total).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(src: &str) -> Dockerfile {
        parse("Dockerfile", src).unwrap_or_else(|e| panic!("{e}"))
    }

    fn cmds(src: &str) -> Vec<Command> {
        let st = ok(src).stages;
        st.into_iter()
            .flat_map(|s| s.instructions)
            .map(|i| i.command)
            .collect()
    }

    fn one(src: &str) -> Command {
        cmds(&format!("FROM scratch\n{src}")).remove(0)
    }

    fn fail(src: &str) -> String {
        parse("Dockerfile", src).expect_err(src).to_string()
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn kv(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn shell(cmd: &str) -> Command {
        let cmd = ShellOrExec::Shell(cmd.into());
        Command::Run {
            cmd,
            heredocs: vec![],
            network: None,
            mounts: vec![],
            security: None,
        }
    }

    #[test]
    fn instruction_errors() {
        // `instruction ~ message`, each parsed as line 2 after `FROM a`; `⏎` is a newline.
        let cases = r#"
            FOO bar ~ unknown instruction: FOO
            CMD ["a", 1] ~ when using JSON array syntax, arrays must be comprised of strings only
            SHELL bash -c ~ SHELL requires the arguments to be in JSON form
            SHELL ~ SHELL requires at least one argument
            RUN --foo=1 ls ~ unknown flag: --foo
            RUN --network=bridge ls ~ invalid network mode "bridge"
            RUN --security=x ls ~ security "x" is not valid
            RUN --network ls ~ missing a value on flag: --network
            RUN --network=none --network=host ls ~ duplicate flag specified: --network
            ENV --x=1 A=b ~ unknown flag: --x
            COPY a ~ COPY requires at least two arguments, but only one was provided. Destination could not be determined
            COPY --keep-git-dir a b ~ unknown flag: --keep-git-dir
            ADD --from=x a b ~ unknown flag: --from
            COPY --link=maybe a b ~ expecting boolean value for flag --link, not: maybe
            COPY --link= a b ~ missing a value on flag: --link
            COPY a <<EOF⏎x⏎EOF ~ COPY cannot accept a heredoc as a destination
            RUN cat <<EOF⏎abc ~ unterminated heredoc
            FROM a b ~ FROM requires either one or three arguments
            FROM ~ FROM requires either one or three arguments
            FROM a AS 1x ~ invalid name for build stage: "1x", name can't start with a number or contain symbols
            FROM --plat=x a ~ unknown flag: --plat
            ENV A ~ ENV must have two arguments
            ENV =x ~ ENV names can not be blank
            ENV ~ ENV requires at least one argument
            LABEL ~ LABEL requires at least one argument
            ENV A=1 B ~ Syntax error - can't find = in "B". Must be of the form: name=value
            ARG =1 ~ ARG names can not be blank
            ARG ~ ARG requires at least one argument
            USER ~ USER requires exactly one argument
            WORKDIR ~ WORKDIR requires exactly one argument
            STOPSIGNAL ~ STOPSIGNAL requires exactly one argument
            MAINTAINER ~ MAINTAINER requires exactly one argument
            EXPOSE ~ EXPOSE requires at least one argument
            VOLUME ~ VOLUME requires at least one argument
            VOLUME [""] ~ VOLUME specified can not be an empty string
            ONBUILD ~ ONBUILD requires at least one argument
            ONBUILD ONBUILD RUN x ~ Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed
            ONBUILD from a ~ FROM isn't allowed as an ONBUILD trigger
            ONBUILD MAINTAINER me ~ MAINTAINER isn't allowed as an ONBUILD trigger
            HEALTHCHECK ~ HEALTHCHECK requires at least one argument
            HEALTHCHECK NONE x ~ HEALTHCHECK NONE takes no arguments
            HEALTHCHECK CMD ~ Missing command after HEALTHCHECK CMD
            HEALTHCHECK RUN x ~ Unknown type "RUN" in HEALTHCHECK (try CMD)
            HEALTHCHECK --interval=10 CMD x ~ time: missing unit in duration "10"
            HEALTHCHECK --interval=1us CMD x ~ Interval "interval" cannot be less than 1ms
            HEALTHCHECK --retries=-1 CMD x ~ --retries cannot be negative (-1)
            HEALTHCHECK --retries=x CMD x ~ strconv.ParseInt: parsing "x": invalid syntax
            HEALTHCHECK --foo=1 CMD x ~ unknown flag: --foo
        "#;
        for line in cases.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (src, msg) = line.split_once(" ~ ").unwrap_or_default();
            let src = format!("FROM a\n{}\n", src.replace('⏎', "\n"));
            assert_eq!(fail(&src), format!("Dockerfile:2: {msg}"), "{src}");
        }
    }

    #[test]
    fn directives() {
        let d = ok("# Syntax = docker/dockerfile:1\n#ESCAPE=`\nFROM b\nRUN echo a `\n  b\n");
        assert_eq!(d.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(d.escape, '`');
        assert_eq!(d.stages[0].instructions[0].command, shell("echo a   b"));
        // A comment, blank line or instruction ends the directives.
        for src in [
            "# hello\n# escape=`\nFROM a\nRUN x `\n",
            "\n# escape=`\nFROM a\n",
        ] {
            assert_eq!(ok(src).escape, '\\');
        }
        let e = fail("# escape=x\nFROM a\n");
        assert_eq!(
            e,
            "Dockerfile:1: invalid escape token 'x' does not match ` or \\"
        );
        let e = fail("# escape=\\\n# escape=`\nFROM a\n");
        assert_eq!(
            e,
            "Dockerfile:2: only one escape parser directive can be used"
        );
    }

    #[test]
    fn comments_and_continuations() {
        let src = "\u{feff}FROM b\n  # c\nRUN echo a \\  \n# in\n\n   \n  b \\\n\tc\nrun echo \\\\\nCMD x\\";
        let d = ok(src);
        let i = &d.stages[0].instructions;
        assert_eq!(i.len(), 3);
        assert_eq!(
            (i[0].line, i[0].original.as_str()),
            (3, "RUN echo a   b \tc")
        );
        // An escaped escape at the end is no continuation; one at EOF is dropped.
        assert_eq!(i[1].command, shell("echo \\\\"));
        assert_eq!((i[1].line, i[2].line), (9, 10));
        assert_eq!(i[2].command, Command::Cmd(ShellOrExec::Shell("x".into())));
        assert_eq!(d.stages[0].original, "FROM b");
    }

    #[test]
    fn file_level_errors_and_meta_args() {
        assert_eq!(fail(""), "Dockerfile:1: file with no instructions");
        assert_eq!(
            fail("# only\n\n# comments\n"),
            "Dockerfile:3: file with no instructions"
        );
        assert_eq!(
            fail("ENV A=b\nFROM a\n"),
            "Dockerfile:1: no build stage in current context"
        );
        let d = ok("ARG A=1 B\nARG C\nfrom $A as Build\n");
        assert_eq!(d.meta_args.len(), 3);
        assert_eq!(
            d.meta_args[1],
            ArgDecl {
                name: "B".into(),
                default: None
            }
        );
        assert_eq!(d.stages[0].name.as_deref(), Some("build"));
    }

    #[test]
    fn from_forms() {
        let d = ok("FROM --platform=$BUILDPLATFORM golang:1 AS build\nFROM build\n");
        let st = &d.stages[0];
        assert_eq!(
            (st.base.as_str(), st.platform.as_deref()),
            ("golang:1", Some("$BUILDPLATFORM"))
        );
        assert_eq!((d.stages[1].name.as_ref(), d.stages[1].line), (None, 2));
        let meta = |k: &str| (k == "BUILDPLATFORM").then(|| "linux/amd64".to_string());
        let lex = Lexer::new('\\');
        let want = ("golang:1".to_string(), Some("linux/amd64".to_string()));
        assert_eq!(expand_from(st, &lex, &meta).unwrap(), want);
        let e = expand_from(&ok("FROM $NOPE\n").stages[0], &lex, &meta).unwrap_err();
        assert_eq!(e.0, "base name ($NOPE) should not be blank");
    }

    #[test]
    fn exec_and_shell_forms() {
        let exec = |v: &[&str]| ShellOrExec::Exec(s(v));
        let sh = |v: &str| ShellOrExec::Shell(v.into());
        assert_eq!(
            one("CMD [\"a\", \"b c\"]"),
            Command::Cmd(exec(&["a", "b c"]))
        );
        assert_eq!(
            one("entrypoint [\"a\",]"),
            Command::Entrypoint(sh("[\"a\",]"))
        );
        assert_eq!(one("CMD ['a']"), Command::Cmd(sh("['a']")));
        assert_eq!(one("CMD []"), Command::Cmd(exec(&[])));
        assert_eq!(one("CMD"), Command::Cmd(sh("")));
        assert_eq!(
            one("SHELL [\"/bin/sh\", \"-c\"]"),
            Command::Shell(s(&["/bin/sh", "-c"]))
        );
    }

    #[test]
    fn run_flags() {
        let c = one("RUN --network=none --mount=type=cache,target=/c --mount=\"type=tmpfs,target=/t\" --security=insecure [\"ls\"]");
        let want = Command::Run {
            cmd: ShellOrExec::Exec(s(&["ls"])),
            heredocs: vec![],
            network: Some("none".into()),
            mounts: s(&["type=cache,target=/c", "type=tmpfs,target=/t"]),
            security: Some("insecure".into()),
        };
        assert_eq!(c, want);
        assert_eq!(one("RUN -- --not-a-flag"), shell("--not-a-flag"));
        let flags = scan_words("--a=\"x y\" --b='z' --c=\\\" -- --d rest", '\\', true);
        assert_eq!(
            flags,
            (s(&["--a=x y", "--b=z", "--c=\""]), " --d rest".into())
        );
        assert_eq!(scan_words("--a b", '\\', true), (s(&["--a"]), "b".into()));
    }

    #[test]
    fn copy_and_add() {
        let c = one("COPY --from=build --chown=1:1 --chmod=755 --link --parents --exclude=*.md --exclude=x a \"b c\" /dst/");
        let want = CopyArgs {
            sources: s(&["a", "\"b", "c\""]),
            dest: "/dst/".into(),
            from: Some("build".into()),
            chown: Some("1:1".into()),
            chmod: Some("755".into()),
            link: true,
            parents: true,
            exclude: s(&["*.md", "x"]),
            ..CopyArgs::default()
        };
        assert_eq!(c, Command::Copy(want));
        let want = CopyArgs {
            sources: s(&["a b"]),
            dest: "/x".into(),
            ..Default::default()
        };
        assert_eq!(one("copy [\"a b\", \"/x\"]"), Command::Copy(want));
        let a =
            one("ADD --keep-git-dir=true --checksum=sha256:ab --link=false --unpack=false u /z");
        let Command::Add(a) = a else { panic!("{a:?}") };
        assert!(a.keep_git_dir && !a.link);
        assert_eq!(
            (a.checksum.as_deref(), a.unpack),
            (Some("sha256:ab"), Some(false))
        );
    }

    #[test]
    fn heredocs() {
        let src = "FROM a\nRUN <<EOF 3<<-'END' cat\necho $A\n  EOF\nEOF\n\t\tx\n\tEND\n\
                   COPY <<one <<\"two\" /dst/\n$A\none\n$B\ntwo\nRUN cat<<EOF [\"x\"]\nCMD x\n";
        let d = ok(src);
        let i = &d.stages[0].instructions;
        assert_eq!(i.len(), 4);
        let Command::Run {
            heredocs: h, cmd, ..
        } = &i[0].command
        else {
            panic!()
        };
        assert_eq!(cmd, &ShellOrExec::Shell("<<EOF 3<<-'END' cat".into()));
        assert_eq!(i[0].original, "RUN <<EOF 3<<-'END' cat");
        let doc = |n: &str, c: &str, expand, chomp| Heredoc {
            name: n.into(),
            content: c.into(),
            expand,
            chomp,
        };
        assert_eq!(
            h[..],
            [
                doc("EOF", "echo $A\n  EOF\n", true, false),
                doc("END", "\t\tx\n", false, true)
            ]
        );
        assert_eq!(h[1].data(), "x\n");
        assert_eq!((i[1].line, i[2].line, i[3].line), (8, 13, 14));
        let Command::Copy(c) = &i[1].command else {
            panic!()
        };
        assert!(c.sources.is_empty());
        let names: Vec<_> = c
            .heredocs
            .iter()
            .map(|h| (h.name.as_str(), h.expand))
            .collect();
        assert_eq!(names, [("one", true), ("two", false)]);
        // `cat<<EOF` is not a heredoc word: no body is consumed.
        assert_eq!(i[2].command, shell("cat<<EOF [\"x\"]"));
        // COPY bodies with an unquoted delimiter are expanded (quotes kept); RUN's are not.
        let env = |k: &str| (k == "A").then(|| "1".to_string());
        let lex = Lexer::new('\\');
        let Command::Copy(e) = i[1].command.expand(&lex, &env).unwrap() else {
            panic!()
        };
        assert_eq!(
            (
                e.heredocs[0].content.as_str(),
                e.heredocs[1].content.as_str()
            ),
            ("1\n", "$B\n")
        );
        assert_eq!(i[0].command.expand(&lex, &env).unwrap(), i[0].command);
        // JSON form has no heredocs; ONBUILD carries the body in its trigger text.
        let e = fail("FROM a\nRUN [\"<<EOF\"]\nEOF\n");
        assert_eq!(e, "Dockerfile:3: unknown instruction: EOF");
        let want = Command::Onbuild("RUN <<EOF\nhi\nEOF".into());
        assert_eq!(one("ONBUILD RUN <<EOF\nhi\nEOF"), want);
    }

    #[test]
    fn env_label_arg() {
        let env = one("ENV A=1 B=\"x y\" C=a\\ b D=");
        assert_eq!(
            env,
            Command::Env(kv(&[
                ("A", "1"),
                ("B", "\"x y\""),
                ("C", "a\\ b"),
                ("D", "")
            ]))
        );
        assert_eq!(
            one("ENV PATH /a b  c"),
            Command::Env(kv(&[("PATH", "/a b  c")]))
        );
        let label = Command::Label(kv(&[("\"a b\"", "c"), ("d", "e")]));
        assert_eq!(one("LABEL \"a b\"=c d=e"), label);
        assert_eq!(
            one("LABEL version 1.0"),
            Command::Label(kv(&[("version", "1.0")]))
        );
        let arg = |n: &str, d: Option<&str>| ArgDecl {
            name: n.into(),
            default: d.map(String::from),
        };
        let want = vec![
            arg("A", None),
            arg("B", Some("2")),
            arg("C", Some("\"x y\"")),
        ];
        assert_eq!(one("ARG A B=2 C=\"x y\""), Command::Arg(want));
        // parse_words keeps quotes and escapes (cases from buildkit's testfiles/env).
        assert_eq!(parse_words("name='a\\'b''", '\\'), s(&["name='a\\'b''"]));
        assert_eq!(
            parse_words("n=\"a\\\"b\" x", '\\'),
            s(&["n=\"a\\\"b\"", "x"])
        );
        assert_eq!(parse_words("a\\ b c\\", '\\'), s(&["a\\ b", "c"]));
    }

    #[test]
    fn simple_instructions() {
        assert_eq!(one("user  app:app"), Command::User("app:app".into()));
        assert_eq!(one("WORKDIR /a b"), Command::Workdir("/a b".into()));
        assert_eq!(
            one("STOPSIGNAL SIGKILL"),
            Command::Stopsignal("SIGKILL".into())
        );
        assert_eq!(
            one("MAINTAINER Jane <j@x>"),
            Command::Maintainer("Jane <j@x>".into())
        );
        assert_eq!(
            one("EXPOSE 8080/tcp 443 $P"),
            Command::Expose(s(&["$P", "443", "8080/tcp"]))
        );
        assert_eq!(
            one("VOLUME [\"/a\", \"/b\"]"),
            Command::Volume(s(&["/a", "/b"]))
        );
        assert_eq!(one("VOLUME /a   /b"), Command::Volume(s(&["/a", "/b"])));
        assert_eq!(
            one("ONBUILD  run echo hi"),
            Command::Onbuild("run echo hi".into())
        );
        let all = "FROM a\nRUN a\nCMD a\nLABEL a=b\nEXPOSE 1\nENV a=b\nCOPY a b\nADD a b\n\
                   VOLUME a\nUSER a\nWORKDIR a\nARG a\nONBUILD RUN a\nSTOPSIGNAL 9\n\
                   HEALTHCHECK NONE\nSHELL [\"a\"]\nMAINTAINER a\nENTRYPOINT a\n";
        let names: Vec<&str> = cmds(all).iter().map(Command::name).collect();
        assert_eq!(
            names.join(" "),
            "RUN CMD LABEL EXPOSE ENV COPY ADD VOLUME USER WORKDIR ARG ONBUILD STOPSIGNAL \
             HEALTHCHECK SHELL MAINTAINER ENTRYPOINT"
        );
    }

    #[test]
    fn healthcheck() {
        assert_eq!(one("HEALTHCHECK none"), Command::Healthcheck(None));
        let h = one(
            "HEALTHCHECK --interval=1m30s --timeout=500ms --start-period=0s \
                     --start-interval=1.5s --retries=3 CMD curl -f x || exit 1",
        );
        let want = HealthCmd {
            test: s(&["CMD-SHELL", "curl -f x || exit 1"]),
            interval: Some(90_000_000_000),
            timeout: Some(500_000_000),
            start_period: None,
            start_interval: Some(1_500_000_000),
            retries: Some(3),
        };
        assert_eq!(h, Command::Healthcheck(Some(want)));
        let Command::Healthcheck(Some(e)) = one("HEALTHCHECK cmd [\"/ok\", \"-v\"]") else {
            panic!()
        };
        assert_eq!(
            (e.test, e.interval, e.retries),
            (s(&["CMD", "/ok", "-v"]), None, None)
        );
        let ok = [
            ("0", 0),
            ("1h2m3s", 3_723_000_000_000),
            (".5s", 500_000_000),
            ("2µs", 2_000),
        ];
        for (s, ns) in ok.into_iter().chain([("-3s", -3_000_000_000), ("+1ns", 1)]) {
            assert_eq!(go_duration(s), Ok(ns), "{s}");
        }
        for s in ["", "s", "1", "1x", "1.s.", "99999999999h", "-"] {
            assert!(go_duration(s).is_err(), "{s}");
        }
    }

    #[test]
    fn expansion() {
        let lex = Lexer::new('\\');
        let env = |k: &str| match k {
            "A" => Some("1".to_string()),
            "P" => Some("80 443/udp".to_string()),
            "U" => Some("app".to_string()),
            _ => None,
        };
        let x = |src: &str| one(src).expand(&lex, &env).unwrap();
        // Every pair sees the environment from before the instruction.
        let want = kv(&[("A", "2"), ("B", "1"), ("C", "hello world"), ("D", "a b")]);
        assert_eq!(
            x("ENV A=2 B=$A C=\"hello world\" D=a\\ b"),
            Command::Env(want)
        );
        assert_eq!(
            x("ENV K the $A value"),
            Command::Env(kv(&[("K", "the 1 value")]))
        );
        let want = Command::Label(kv(&[("a b", "c"), ("app", "$U")]));
        assert_eq!(x("LABEL \"a b\"=c \"$U\"='$U'"), want);
        assert_eq!(
            x("EXPOSE $P 22"),
            Command::Expose(s(&["80", "443/udp", "22"]))
        );
        assert_eq!(x("VOLUME [\"/d/$A\"]"), Command::Volume(s(&["/d/1"])));
        assert_eq!(x("USER ${U}:${G:-grp}"), Command::User("app:grp".into()));
        assert_eq!(x("WORKDIR /w/$A"), Command::Workdir("/w/1".into()));
        assert_eq!(x("STOPSIGNAL SIG$U"), Command::Stopsignal("SIGapp".into()));
        let want = vec![
            ArgDecl {
                name: "X".into(),
                default: Some("1".into()),
            },
            ArgDecl {
                name: "Y".into(),
                default: None,
            },
        ];
        assert_eq!(x("ARG X=$A Y"), Command::Arg(want));
        let Command::Copy(c) = x("COPY --chown=$U --from=s$A a$A /d$A/") else {
            panic!()
        };
        let want = (
            s(&["a1"]),
            "/d1/".to_string(),
            Some("app".to_string()),
            Some("s1".to_string()),
        );
        assert_eq!((c.sources, c.dest, c.chown, c.from), want);
        let keep = [
            "RUN echo $A",
            "CMD echo $A",
            "ENTRYPOINT [\"$A\"]",
            "ONBUILD RUN $A",
        ];
        for k in keep
            .into_iter()
            .chain(["HEALTHCHECK CMD $A", "SHELL [\"$A\"]", "MAINTAINER $A"])
        {
            assert_eq!(x(k), one(k), "{k}");
        }
        let e = one("USER ${NOPE:?must be set}")
            .expand(&lex, &env)
            .unwrap_err();
        assert!(e.0.contains("NOPE: must be set"), "{e}");
    }
}
