//! Re-indents raw JSON the way Go's `json.MarshalIndent(v, "", "    ")` prints it,
//! keeping the daemon's key order (Go prints struct fields in declaration order,
//! which is the order the API sends) and Go's HTML escaping of `<`, `>`, `&`.

pub fn indent(raw: &[u8], prefix_level: usize) -> String {
    let s = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(s.len() * 2);
    let mut level = prefix_level;
    let mut chars = s.chars().peekable();
    let nl = |out: &mut String, level: usize| {
        out.push('\n');
        for _ in 0..level {
            out.push_str("    ");
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                out.push('"');
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            out.push('\\');
                            if let Some(n) = chars.next() {
                                out.push(n);
                            }
                        }
                        '"' => break,
                        '<' => out.push_str("\\u003c"),
                        '>' => out.push_str("\\u003e"),
                        '&' => out.push_str("\\u0026"),
                        c => out.push(c),
                    }
                }
                out.push('"');
            }
            '{' | '[' => {
                // Skip whitespace to see whether the container is empty.
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                let close = if c == '{' { '}' } else { ']' };
                if chars.peek() == Some(&close) {
                    chars.next();
                    out.push(c);
                    out.push(close);
                } else {
                    out.push(c);
                    level += 1;
                    nl(&mut out, level);
                }
            }
            '}' | ']' => {
                level = level.saturating_sub(1);
                nl(&mut out, level);
                out.push(c);
            }
            ',' => {
                out.push(',');
                nl(&mut out, level);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// Prints a list of raw JSON documents as docker inspect does: an indented array.
pub fn indent_array(items: &[Vec<u8>]) -> String {
    if items.is_empty() {
        return "[]".into();
    }
    let mut out = String::from("[\n    ");
    let parts: Vec<String> = items.iter().map(|i| indent(i, 1)).collect();
    out.push_str(&parts.join(",\n    "));
    out.push_str("\n]");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indents_like_go() {
        let raw = br#"{"Id":"abc","Args":[],"Env":["A=1","B=<x>"],"State":{"Running":true,"Pid":1},"Labels":{}}"#;
        let want = "{\n    \"Id\": \"abc\",\n    \"Args\": [],\n    \"Env\": [\n        \"A=1\",\n        \"B=\\u003cx\\u003e\"\n    ],\n    \"State\": {\n        \"Running\": true,\n        \"Pid\": 1\n    },\n    \"Labels\": {}\n}";
        assert_eq!(indent(raw, 0), want);
    }

    #[test]
    fn array_of_documents() {
        let out = indent_array(&[br#"{"a":1}"#.to_vec()]);
        assert_eq!(out, "[\n    {\n        \"a\": 1\n    }\n]");
        assert_eq!(indent_array(&[]), "[]");
    }

    #[test]
    fn strings_with_structural_chars_are_untouched() {
        assert_eq!(
            indent(br#"["a,b:{c}","\"q\""]"#, 0),
            "[\n    \"a,b:{c}\",\n    \"\\\"q\\\"\"\n]"
        );
    }
}
