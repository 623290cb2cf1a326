//! Go templates for `--format`, on gtmpl, with docker/cli's extra functions and
//! Go's `fmt` printing of values (`[a b]`, `map[k:v]`).

use std::collections::{BTreeMap, HashMap};

use gtmpl::{Context, FuncError, Template, Value};

#[derive(Debug)]
pub struct TemplateError(pub String);

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TemplateError {}

/// A parsed `--format` template.
pub struct Tmpl {
    inner: Template,
    /// The format as the user wrote it, to point at errors as Go does ("1:2").
    src: String,
}

impl Tmpl {
    /// Parses a docker format string (without any `table` prefix).
    pub fn parse(format: &str) -> Result<Tmpl, TemplateError> {
        let mut t = Template::default();
        t.add_funcs(&[
            ("json", json as gtmpl::Func),
            ("join", join as gtmpl::Func),
            ("split", split as gtmpl::Func),
            ("lower", lower as gtmpl::Func),
            ("upper", upper as gtmpl::Func),
            ("title", title as gtmpl::Func),
            ("truncate", truncate as gtmpl::Func),
            ("pad", pad as gtmpl::Func),
            ("println", println as gtmpl::Func),
            ("__gofmt", gofmt_fn as gtmpl::Func),
            ("__label", label_fn as gtmpl::Func),
            ("__rangeable", rangeable as gtmpl::Func),
            ("len", len as gtmpl::Func),
            ("index", index as gtmpl::Func),
        ]);
        t.parse(rewrite(format))
            .map_err(|e| TemplateError(format!("template parsing error: {e}")))?;
        Ok(Tmpl {
            inner: t,
            src: format.to_string(),
        })
    }

    pub fn render(&self, data: &Value) -> Result<String, TemplateError> {
        self.inner
            .render(&Context::from(data.clone()))
            .map_err(|e| match e {
                // gtmpl's message dumps the whole object; say it as Go does.
                gtmpl::error::ExecError::NoFiledFor(field, _) => {
                    let at = format!(".{field}");
                    // Go reports line and 0-based column of the node.
                    let pos = match self.src.find(&at) {
                        Some(i) => {
                            let line = 1 + self.src[..i].matches('\n').count();
                            let col = i - self.src[..i].rfind('\n').map(|n| n + 1).unwrap_or(0);
                            format!(":{line}:{col}:")
                        }
                        None => String::new(),
                    };
                    TemplateError(format!(
                        "template: {pos} executing \"\" at <{at}>: map has no entry for key \"{field}\""
                    ))
                }
                e => TemplateError(format!("template: {e}")),
            })
    }
}

/// A `--format` value split the way docker/cli's formatter does it.
pub struct Format {
    pub table: bool,
    pub body: String,
}

impl Format {
    /// `default_table` is used for "" and "table"; "json" means `{{json .}}`.
    pub fn new(format: Option<&str>, default_table: &str) -> Format {
        let mut f = format.unwrap_or("");
        if f.is_empty() || f == "table" {
            f = default_table;
        }
        let (table, body) = if f == "json" {
            (false, "{{json .}}".to_string())
        } else if let Some(rest) = f.strip_prefix("table") {
            (true, rest.trim().to_string())
        } else {
            (false, f.to_string())
        };
        // docker/cli turns the two-character sequences \t and \n into real ones.
        let body = body.replace("\\t", "\t").replace("\\n", "\n");
        Format { table, body }
    }

    /// Renders rows (and the header for tables) and aligns the columns.
    pub fn render(&self, header: &Value, rows: &[Value]) -> Result<String, TemplateError> {
        let t = Tmpl::parse(&self.body)?;
        self.render_with(&t, header, rows)
            .map_err(|e| TemplateError(format!("failed to execute template: {}", e.0)))
    }

    fn render_with(
        &self,
        t: &Tmpl,
        header: &Value,
        rows: &[Value],
    ) -> Result<String, TemplateError> {
        let mut out = String::new();
        if self.table {
            let h = t.render(header)?;
            if !h.is_empty() {
                out.push_str(&h);
                out.push('\n');
            }
        }
        for r in rows {
            out.push_str(&t.render(r)?);
            out.push('\n');
        }
        Ok(if self.table {
            crate::table::tabwrite(&out)
        } else {
            out
        })
    }
}

const KEYWORDS: &[&str] = &[
    "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
];

/// Wraps every printing action in `__gofmt` so values print as Go prints them, and turns
/// `.Label "k"` (a method call in docker's Go contexts) into a function call.
fn rewrite(src: &str) -> String {
    let mut out = String::with_capacity(src.len() + 32);
    let mut rest = src;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = find_action_end(after) else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = &after[..end];
        out.push_str("{{");
        out.push_str(&rewrite_action(inner));
        out.push_str("}}");
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// Finds the closing `}}` of an action, skipping string and char literals.
fn find_action_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' => {
                let q = b[i];
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn rewrite_action(inner: &str) -> String {
    let (lead, body) = match inner.strip_prefix("- ") {
        Some(b) => ("- ", b),
        None => ("", inner),
    };
    let (body, trail) = match body.strip_suffix(" -") {
        Some(b) => (b, " -"),
        None => (body, ""),
    };
    let trimmed = body.trim();
    let first = trimmed
        .split(|c: char| c.is_whitespace() || c == '(')
        .next()
        .unwrap_or("");
    if first == "range" {
        return format!("{lead}{}{trail}", rewrite_range(&rewrite_label(body)));
    }
    let is_control = KEYWORDS.contains(&first) || trimmed.starts_with("/*");
    let is_decl = trimmed.starts_with('$') && (trimmed.contains(":=") || is_assign(trimmed));
    let body = rewrite_label(body);
    if is_control || is_decl || trimmed.is_empty() {
        return format!("{lead}{body}{trail}");
    }
    // A plain field chain (".Config.Labels", "$c.State") names the field it prints.
    let last = trimmed.rsplit('.').next().unwrap_or("");
    let is_chain = trimmed.contains('.')
        && trimmed
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '$')
        && !last.is_empty();
    if is_chain {
        return format!("{lead}{body} | __gofmt \"{last}\"{trail}");
    }
    format!("{lead}{body} | __gofmt{trail}")
}

/// `range PIPE` → `range (PIPE | __rangeable)`, so ranging over null does nothing
/// (as over a nil slice in Go) instead of failing.
fn rewrite_range(body: &str) -> String {
    let Some(pos) = body.find("range") else {
        return body.to_string();
    };
    let (head, rest) = body.split_at(pos + 5);
    let (decl, pipe) = match rest.find(":=") {
        Some(i) => rest.split_at(i + 2),
        None => ("", rest),
    };
    if pipe.trim().is_empty() {
        return body.to_string();
    }
    format!("{head}{decl} ({} | __rangeable)", pipe.trim())
}

fn is_assign(s: &str) -> bool {
    // `$x = value` (not `==`, which is not Go template syntax anyway).
    s.split_whitespace().nth(1) == Some("=")
}

/// `.Label "key"` → `(__label . "key")`.
fn rewrite_label(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some(pos) = rest.find(".Label ") {
        let before_ok = pos == 0
            || rest[..pos]
                .chars()
                .last()
                .is_some_and(|c| c.is_whitespace() || c == '(');
        let arg = rest[pos + 7..].trim_start();
        if before_ok && arg.starts_with('"') {
            let skipped = rest[pos + 7..].len() - arg.len();
            if let Some(close) = arg[1..].find('"') {
                out.push_str(&rest[..pos]);
                out.push_str("(__label . ");
                out.push_str(&arg[..close + 2]);
                out.push(')');
                rest = &rest[pos + 7 + skipped + close + 2..];
                continue;
            }
        }
        out.push_str(&rest[..pos + 7]);
        rest = &rest[pos + 7..];
    }
    out.push_str(rest);
    out
}

/// Go's `fmt.Sprint` of a value decoded from JSON.
pub fn go_print(v: &Value) -> String {
    go_print_field(v, None)
}

/// Fields of docker's API types that are Go maps even when their keys are capitalized
/// (GraphDriver.Data has "LowerDir", version Details has "ApiVersion").
const MAP_FIELDS: &[&str] = &[
    "Labels",
    "Networks",
    "Ports",
    "ExposedPorts",
    "Volumes",
    "PortBindings",
    "DriverOpts",
    "Data",
    "Sysctls",
    "Tmpfs",
    "StorageOpt",
    "Annotations",
    "Details",
    "Runtimes",
    "IndexConfigs",
    "Options",
    "Containers",
];

/// Go's `fmt.Sprint`, knowing the field name the value came from. Objects recorded
/// from the daemon whose keys are all capitalized are Go structs and print as
/// `{v1 v2}` in field order; everything else prints as a sorted `map[k:v]`.
fn go_print_field(v: &Value, field: Option<&str>) -> String {
    match v {
        Value::NoValue => "<no value>".into(),
        // Docker templates run on typed Go structs, where a JSON null is almost always
        // a nil slice or map, which Go prints as "[]".
        Value::Nil if field.is_some_and(|f| MAP_FIELDS.contains(&f)) => "map[]".into(),
        Value::Nil => "[]".into(),
        Value::Bool(b) => b.to_string(),
        Value::String(s) => s.clone(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.to_string()
            } else if let Some(u) = n.as_u64() {
                u.to_string()
            } else if let Some(f) = n.as_f64() {
                go_float(f)
            } else {
                n.to_string()
            }
        }
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().map(|x| go_print_field(x, None)).collect();
            format!("[{}]", parts.join(" "))
        }
        // ExposedPorts and Volumes map to struct{}: Go prints those values as "{}".
        Value::Object(m) | Value::Map(m)
            if m.is_empty()
                && field.is_some_and(|f| {
                    f.starts_with('/') || f.starts_with(|c: char| c.is_ascii_digit())
                }) =>
        {
            "{}".into()
        }
        Value::Object(m) | Value::Map(m) => {
            let mut keys: Vec<String> =
                m.keys().filter(|k| !k.starts_with("__")).cloned().collect();
            keys.sort();
            let is_map_field = field.is_some_and(|f| MAP_FIELDS.contains(&f));
            let all_caps = keys
                .iter()
                .all(|k| k.starts_with(|c: char| c.is_ascii_uppercase()));
            let order = if !keys.is_empty() && all_caps && !is_map_field {
                KEY_ORDER.with(|o| o.borrow().get(&keys).cloned())
            } else {
                None
            };
            match order {
                Some(order) => {
                    let parts: Vec<String> = order
                        .iter()
                        .map(|k| {
                            m.get(k)
                                .map(|x| go_print_field(x, Some(k)))
                                .unwrap_or_default()
                        })
                        .collect();
                    format!("{{{}}}", parts.join(" "))
                }
                None => {
                    let sorted: BTreeMap<&String, &Value> =
                        m.iter().filter(|(k, _)| !k.starts_with("__")).collect();
                    let parts: Vec<String> = sorted
                        .iter()
                        .map(|(k, x)| format!("{k}:{}", go_print_field(x, Some(k))))
                        .collect();
                    format!("map[{}]", parts.join(" "))
                }
            }
        }
        Value::Function(_) => "<func>".into(),
    }
}

/// Go's `%v` for float64: shortest repr, exponent form from 1e21 up.
fn go_float(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e21 {
        format!("{f:.0}")
    } else {
        f.to_string()
    }
}

/// Converts JSON (as the API returns it) into a template value. Objects that stand
/// for Go structs become `Object`s, where a missing field is an error as in docker's
/// templates; Go maps (Labels, ...) become `Map`s, where a missing key is no value.
pub fn from_json(v: &serde_json::Value) -> Value {
    from_json_field(v, None)
}

fn is_struct_like(field: Option<&str>, o: &serde_json::Map<String, serde_json::Value>) -> bool {
    !field.is_some_and(|f| MAP_FIELDS.contains(&f))
        && o.keys()
            .all(|k| k.starts_with(|c: char| c.is_ascii_uppercase()))
}

fn from_json_field(v: &serde_json::Value, field: Option<&str>) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(0.0))
            }
        }
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(from_json).collect()),
        serde_json::Value::Object(o) => {
            let m = o
                .iter()
                .map(|(k, v)| (k.clone(), from_json_field(v, Some(k))))
                .collect::<HashMap<_, _>>();
            // An empty object is a Go map as often as a struct; a map is lenient.
            if !o.is_empty() && is_struct_like(field, o) {
                Value::Object(m)
            } else {
                Value::Map(m)
            }
        }
    }
}

/// Adds a field to an object or map value (our helper keys, aliases).
pub fn insert_field(v: &mut Value, key: &str, val: Value) {
    if let Value::Object(m) | Value::Map(m) = v {
        m.insert(key.to_string(), val);
    }
}

/// Converts a template value back to JSON for `{{json .}}` (map keys sorted, as Go does).
pub fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::NoValue | Value::Nil | Value::Function(_) => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into()
            } else if let Some(u) = n.as_u64() {
                u.into()
            } else {
                serde_json::Number::from_f64(n.as_f64().unwrap_or(0.0))
                    .map(serde_json::Value::Number)
                    .unwrap_or(serde_json::Value::Null)
            }
        }
        Value::Array(a) => serde_json::Value::Array(a.iter().map(to_json).collect()),
        Value::Object(m) | Value::Map(m) => serde_json::Value::Object(
            m.iter()
                // Keys starting with "__" are our own helpers, not part of the object.
                .filter(|(k, _)| !k.starts_with("__"))
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect(),
        ),
    }
}

/// A string-keyed map value, for building contexts.
pub fn object(fields: Vec<(&str, Value)>) -> Value {
    Value::Object(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

fn arg_str(args: &[Value], i: usize, name: &str) -> Result<String, FuncError> {
    match args.get(i) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v) => Ok(go_print(v)),
        None => Err(FuncError::ExactlyXArgs(name.into(), i + 1)),
    }
}

fn arg_int(args: &[Value], i: usize, name: &str) -> Result<i64, FuncError> {
    match args.get(i) {
        Some(Value::Number(n)) => n.as_i64().ok_or(FuncError::UnableToConvertFromValue),
        Some(Value::String(s)) => s.parse().map_err(|_| FuncError::UnableToConvertFromValue),
        _ => Err(FuncError::ExactlyXArgs(name.into(), i + 1)),
    }
}

fn json(args: &[Value]) -> Result<Value, FuncError> {
    let v = args
        .first()
        .ok_or(FuncError::ExactlyXArgs("json".into(), 1))?;
    let mut out = String::new();
    KEY_ORDER.with(|o| write_json(v, &o.borrow(), &mut out));
    // Go's encoding/json escapes <, > and & (docker's output shows "\u003cnone\u003e").
    Ok(Value::String(
        out.replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026"),
    ))
}

/// Key sets (sorted) → the order the daemon sent them in.
type KeyOrders = HashMap<Vec<String>, Vec<String>>;

thread_local! {
    // Docker renders `{{json .Config}}` from Go structs, whose fields come out in
    // declaration order: the order the API sends. Template values are hash maps, so
    // the order of every object of the last document is remembered here.
    static KEY_ORDER: std::cell::RefCell<KeyOrders> = Default::default();
}

/// Remembers the key order of every object in a raw JSON document for `json`.
pub fn record_key_order(raw: &[u8]) {
    let mut orders = KeyOrders::new();
    let mut de = serde_json::Deserializer::from_slice(raw);
    if serde::de::DeserializeSeed::deserialize(Recorder(&mut orders), &mut de).is_ok() {
        KEY_ORDER.with(|o| o.borrow_mut().extend(orders));
    }
}

struct Recorder<'a>(&'a mut KeyOrders);

impl<'de> serde::de::DeserializeSeed<'de> for Recorder<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Recorder<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Recorder(&mut *self.0))?.is_some() {}
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            map.next_value_seed(Recorder(&mut *self.0))?;
            keys.push(k);
        }
        let mut sorted = keys.clone();
        sorted.sort();
        self.0.insert(sorted, keys);
        Ok(())
    }
}

/// Serializes a template value: recorded objects in the daemon's key order, other
/// maps sorted (as Go marshals maps).
fn write_json(v: &Value, orders: &KeyOrders, out: &mut String) {
    match v {
        Value::Map(m) | Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().filter(|k| !k.starts_with("__")).collect();
            keys.sort();
            let sorted: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
            // Go struct fields start with a capital letter; anything else is a Go map,
            // which encoding/json sorts whatever order the daemon used.
            let is_struct = sorted
                .iter()
                .all(|k| k.starts_with(|c: char| c.is_ascii_uppercase()));
            let order: Vec<String> = if is_struct {
                orders.get(&sorted).cloned().unwrap_or(sorted)
            } else {
                sorted
            };
            out.push('{');
            for (i, k) in order.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(val) = m.get(k) {
                    write_json(val, orders, out);
                }
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(x, orders, out);
            }
            out.push(']');
        }
        other => out.push_str(&to_json(other).to_string()),
    }
}

fn join(args: &[Value]) -> Result<Value, FuncError> {
    let sep = arg_str(args, 1, "join")?;
    match args.first() {
        Some(Value::Array(a)) => Ok(Value::String(
            a.iter().map(go_print).collect::<Vec<_>>().join(&sep),
        )),
        Some(Value::Nil) | Some(Value::NoValue) => Ok(Value::String(String::new())),
        _ => Err(FuncError::UnableToConvertFromValue),
    }
}

fn split(args: &[Value]) -> Result<Value, FuncError> {
    let s = arg_str(args, 0, "split")?;
    let sep = arg_str(args, 1, "split")?;
    let parts: Vec<Value> = if sep.is_empty() {
        s.chars().map(|c| Value::String(c.to_string())).collect()
    } else {
        s.split(sep.as_str())
            .map(|p| Value::String(p.to_string()))
            .collect()
    };
    Ok(Value::Array(parts))
}

fn lower(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(arg_str(args, 0, "lower")?.to_lowercase()))
}

fn upper(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(arg_str(args, 0, "upper")?.to_uppercase()))
}

/// Go's deprecated `strings.Title`: upper-case the first letter of each word.
fn title(args: &[Value]) -> Result<Value, FuncError> {
    let s = arg_str(args, 0, "title")?;
    let mut out = String::with_capacity(s.len());
    let mut prev_letter = false;
    for c in s.chars() {
        if !prev_letter && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_letter = c.is_alphanumeric() || c == '_' || c == '\'';
    }
    Ok(Value::String(out))
}

/// docker's `truncate`: the first n bytes (we cut on a char boundary).
fn truncate(args: &[Value]) -> Result<Value, FuncError> {
    let s = arg_str(args, 0, "truncate")?;
    let n = arg_int(args, 1, "truncate")?.max(0) as usize;
    Ok(Value::String(s.chars().take(n).collect()))
}

/// docker's `pad`: prefix and suffix spaces, unless the string is empty.
fn pad(args: &[Value]) -> Result<Value, FuncError> {
    let s = arg_str(args, 0, "pad")?;
    if s.is_empty() {
        return Ok(Value::String(s));
    }
    let pre = arg_int(args, 1, "pad")?.max(0) as usize;
    let suf = arg_int(args, 2, "pad")?.max(0) as usize;
    Ok(Value::String(format!(
        "{}{s}{}",
        " ".repeat(pre),
        " ".repeat(suf)
    )))
}

/// Go's `fmt.Sprintln`: operands separated by spaces, newline at the end.
fn println(args: &[Value]) -> Result<Value, FuncError> {
    let parts: Vec<String> = args.iter().map(go_print).collect();
    Ok(Value::String(format!("{}\n", parts.join(" "))))
}

fn gofmt_fn(args: &[Value]) -> Result<Value, FuncError> {
    // `__gofmt "Field"` carries the name of the field the action printed.
    let field = match args {
        [Value::String(f), _] => Some(f.as_str()),
        _ => None,
    };
    Ok(Value::String(
        args.last()
            .map(|v| go_print_field(v, field))
            .unwrap_or_default(),
    ))
}

/// Go's `index`: a missing map key gives the zero value (docker's maps hold strings).
fn index(args: &[Value]) -> Result<Value, FuncError> {
    let (col, keys) = match args.split_first() {
        Some((c, k)) if !k.is_empty() => (c, k),
        _ => return Err(FuncError::AtLeastXArgs("index".into(), 2)),
    };
    let mut cur = col.clone();
    for k in keys {
        cur = match (&cur, k) {
            (Value::Array(a), Value::Number(n)) => {
                let i = n.as_u64().unwrap_or(u64::MAX) as usize;
                a.get(i)
                    .cloned()
                    .ok_or_else(|| FuncError::Generic(format!("index out of range: {n}")))?
            }
            (Value::Map(m) | Value::Object(m), Value::String(s)) => {
                m.get(s).cloned().unwrap_or(Value::String(String::new()))
            }
            (Value::Nil, _) => Value::String(String::new()),
            (c, k) => {
                return Err(FuncError::Generic(format!(
                    "can't index item of type {} with {}",
                    go_print(c),
                    go_print(k)
                )))
            }
        };
    }
    Ok(cur)
}

/// Go's `len`, for maps too (gtmpl's refuses its own maps).
fn len(args: &[Value]) -> Result<Value, FuncError> {
    let n = match args {
        [Value::String(s)] => s.len(),
        [Value::Array(a)] => a.len(),
        [Value::Map(m) | Value::Object(m)] => m.keys().filter(|k| !k.starts_with("__")).count(),
        [Value::Nil] => 0,
        [other] => {
            return Err(FuncError::Generic(format!(
                "len of type {}",
                go_print(other)
            )))
        }
        _ => return Err(FuncError::ExactlyXArgs("len".into(), 1)),
    };
    Ok(Value::from(n as u64))
}

fn rangeable(args: &[Value]) -> Result<Value, FuncError> {
    match args.last() {
        Some(Value::Nil) | Some(Value::NoValue) | None => Ok(Value::Array(Vec::new())),
        Some(v) => Ok(v.clone()),
    }
}

/// `.Label "k"` on a ps context: the label's value, or "".
fn label_fn(args: &[Value]) -> Result<Value, FuncError> {
    let key = arg_str(args, 1, "Label")?;
    if let Some(Value::Map(m) | Value::Object(m)) = args.first() {
        if let Some(Value::Map(labels) | Value::Object(labels)) = m.get("__labels") {
            if let Some(v) = labels.get(&key) {
                return Ok(v.clone());
            }
        }
        // In the header row docker titles a `.Label "k"` column with the key itself.
        if m.contains_key("__header_label") {
            return Ok(Value::String(key));
        }
    }
    Ok(Value::String(String::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(fmt: &str, v: serde_json::Value) -> String {
        match Tmpl::parse(fmt).and_then(|t| t.render(&from_json(&v))) {
            Ok(s) => s,
            Err(e) => format!("ERR {e}"),
        }
    }

    #[test]
    fn prints_like_go() {
        let v = serde_json::json!({"Config": {"Cmd": ["sh", "-c", "echo hi"], "Labels": {"b": "2", "a": "1"}},
            "State": {"Status": "running", "Pid": 42, "Running": true}, "Nil": null});
        assert_eq!(render("{{.State.Status}}", v.clone()), "running");
        assert_eq!(render("{{.Config.Cmd}}", v.clone()), "[sh -c echo hi]");
        assert_eq!(render("{{.Config.Labels}}", v.clone()), "map[a:1 b:2]");
        assert_eq!(
            render("{{.State.Pid}} {{.State.Running}}", v.clone()),
            "42 true"
        );
        assert_eq!(render("{{.Nil}}", v.clone()), "[]");
        assert_eq!(
            render(
                "{{range .Nil}}x{{end}}|{{range $i, $e := .Nil}}x{{end}}",
                v.clone()
            ),
            "|"
        );
        assert_eq!(
            render(
                "{{range $i, $e := .Config.Cmd}}{{$i}}={{$e}} {{end}}",
                v.clone()
            ),
            "0=sh 1=-c 2=echo hi "
        );
        assert_eq!(render("{{- .State.Status -}}", v.clone()), "running");
        assert_eq!(
            render("{{json .State}}", v.clone()),
            r#"{"Pid":42,"Running":true,"Status":"running"}"#
        );
        assert_eq!(
            render("{{if .State.Running}}yes{{else}}no{{end}}", v.clone()),
            "yes"
        );
        assert_eq!(
            render("{{range .Config.Cmd}}<{{.}}>{{end}}", v.clone()),
            "<sh><-c><echo hi>"
        );
        assert_eq!(render("{{$x := .State.Pid}}{{$x}}", v.clone()), "42");
        assert_eq!(render("{{index .Config.Labels \"a\"}}", v), "1");
    }

    #[test]
    fn json_keeps_the_daemon_key_order() {
        let raw = br#"{"Id":"x","Config":{"Hostname":"h","Env":["A=1"],"Cmd":["sh"],"Labels":{"z":"1","a":"2"}}}"#;
        // Labels is a Go map: sorted, whatever the daemon's order.
        record_key_order(raw);
        let v: serde_json::Value = serde_json::from_slice(raw).unwrap_or_default();
        assert_eq!(
            render("{{json .Config}}", v),
            r#"{"Hostname":"h","Env":["A=1"],"Cmd":["sh"],"Labels":{"a":"2","z":"1"}}"#
        );
        // Objects never seen come out sorted, as Go marshals maps.
        assert_eq!(
            render("{{json .}}", serde_json::json!({"b": 1, "a": 2})),
            r#"{"a":2,"b":1}"#
        );
    }

    #[test]
    fn structs_print_like_go_structs() {
        let raw = br#"{"State":{"Status":"running","Pid":7},"HostConfig":{"PortBindings":{"80/tcp":[{"HostIp":"","HostPort":"8080"}]}},"GraphDriver":{"Data":{"UpperDir":"/u","LowerDir":"/l"}},"Config":{"Labels":{"MAINTAINER":"me"},"ExposedPorts":{"80/tcp":{}},"Volumes":null}}"#;
        record_key_order(raw);
        let v: serde_json::Value = serde_json::from_slice(raw).unwrap_or_default();
        assert_eq!(render("{{.State}}", v.clone()), "{running 7}");
        assert_eq!(
            render("{{.HostConfig.PortBindings}}", v.clone()),
            "map[80/tcp:[{ 8080}]]"
        );
        assert_eq!(
            render("{{.GraphDriver.Data}}", v.clone()),
            "map[LowerDir:/l UpperDir:/u]"
        );
        assert_eq!(
            render("{{.Config.Labels}}", v.clone()),
            "map[MAINTAINER:me]"
        );
        assert_eq!(
            render("{{.Config.ExposedPorts}}", v.clone()),
            "map[80/tcp:{}]"
        );
        assert_eq!(render("{{.Config.Volumes}}", v), "map[]");
    }

    #[test]
    fn docker_functions() {
        let v = serde_json::json!({"S": "Hello world", "L": ["a", "b"], "E": ""});
        assert_eq!(render("{{join .L \",\"}}", v.clone()), "a,b");
        assert_eq!(render("{{split \"a:b\" \":\"}}", v.clone()), "[a b]");
        assert_eq!(
            render("{{lower .S}}|{{upper .S}}", v.clone()),
            "hello world|HELLO WORLD"
        );
        assert_eq!(render("{{title \"foo bar\"}}", v.clone()), "Foo Bar");
        assert_eq!(render("{{truncate .S 5}}", v.clone()), "Hello");
        assert_eq!(
            render("{{pad .S 1 2}}|{{pad .E 1 2}}", v.clone()),
            " Hello world  |"
        );
        assert_eq!(render("{{println .S}}", v.clone()), "Hello world\n");
        assert_eq!(render("{{json .L}}", v), r#"["a","b"]"#);
    }

    #[test]
    fn label_method_and_table() {
        let mut row = from_json(&serde_json::json!({"ID": "abc", "Names": "web"}));
        if let Value::Map(m) | Value::Object(m) = &mut row {
            m.insert(
                "__labels".into(),
                from_json(&serde_json::json!({"app": "x"})),
            );
        }
        assert_eq!(
            Tmpl::parse("{{.Names}}={{.Label \"app\"}}")
                .and_then(|t| t.render(&row))
                .unwrap_or_default(),
            "web=x"
        );
        let f = Format::new(Some("table {{.ID}}\\t{{.Names}}"), "");
        assert!(f.table);
        let header = from_json(&serde_json::json!({"ID": "CONTAINER ID", "Names": "NAMES"}));
        let out = f.render(&header, &[row]).unwrap_or_default();
        assert_eq!(out, "CONTAINER ID   NAMES\nabc            web\n");
        let f = Format::new(Some("{{.ID}}"), "");
        assert!(!f.table);
        let f = Format::new(Some("json"), "");
        assert_eq!(f.body, "{{json .}}");
        let f = Format::new(Some("table"), "table {{.ID}}");
        assert!(f.table);
        assert_eq!(f.body, "{{.ID}}");
    }

    #[test]
    fn missing_fields_error_but_missing_map_keys_do_not() {
        let v = serde_json::json!({"Config": {"Labels": {"a": "1"}, "Cmd": ["x"]}});
        assert_eq!(
            render("x\n {{.Nope}}", v.clone()),
            "ERR template: :2:3: executing \"\" at <.Nope>: map has no entry for key \"Nope\""
        );
        assert_eq!(
            render(
                "{{index .Config.Labels \"b\"}}|{{index .Config.Cmd 0}}",
                v.clone()
            ),
            "|x"
        );
        assert_eq!(render("{{.Config.Labels.b}}", v.clone()), "<no value>");
        assert_eq!(
            render("{{len .Config.Labels}} {{len .Config.Cmd}}", v),
            "1 1"
        );
    }

    #[test]
    fn bad_template_is_an_error() {
        assert!(
            Tmpl::parse("{{.Foo").is_err()
                || render("{{.Foo", serde_json::json!({})).starts_with("ERR")
        );
    }
}
