//! `-v` and `--mount` as docker/cli parses them (`internal/volumespec`, `opts/mount.go`),
//! with the same messages.

use bollard::models::{
    Mount, MountBindOptions, MountBindOptionsPropagationEnum, MountImageOptions, MountTmpfsOptions,
    MountType, MountVolumeOptions, MountVolumeOptionsDriverConfig,
};
use std::collections::HashMap;

/// `-v` values split docker's way: specs with a source go to `HostConfig.Binds` (a
/// relative `./dir` made absolute), the others (`-v /data`) to `Config.Volumes`.
pub fn split_volumes(specs: &[String]) -> Result<(Vec<String>, Vec<String>), String> {
    let mut binds = Vec::new();
    let mut anonymous = Vec::new();
    for spec in specs {
        let (source, _) = parse_volume_spec(spec)?;
        if source.is_empty() {
            if !anonymous.contains(spec) {
                anonymous.push(spec.clone());
            }
            continue;
        }
        let mut bind = spec.clone();
        if let Some((host, rest)) = spec.split_once(':') {
            if host.starts_with('.') {
                if let Ok(cwd) = std::env::current_dir() {
                    let abs = cwd.join(host);
                    bind = format!("{}:{rest}", clean(&abs.display().to_string()));
                }
            }
        }
        binds.push(bind);
    }
    Ok((binds, anonymous))
}

fn clean(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

/// docker/cli's `volumespec.Parse`: `(source, target)`, with its errors.
fn parse_volume_spec(spec: &str) -> Result<(String, String), String> {
    match spec.chars().count() {
        0 => return Err("invalid empty volume spec".into()),
        1 | 2 => return Ok((String::new(), spec.to_string())),
        _ => {}
    }
    let mut source = String::new();
    let mut target = String::new();
    let mut buf = String::new();
    let chars: Vec<char> = spec.chars().collect();
    for i in 0..=chars.len() {
        let end = i == chars.len();
        let c = if end { '\0' } else { chars[i] };
        // A Windows drive letter ("c:") is part of the path.
        let drive = c == ':' && buf.chars().count() == 1 && buf.chars().all(char::is_alphabetic);
        if drive {
            buf.push(c);
        } else if c == ':' || end {
            if buf.is_empty() {
                return Err(format!(
                    "invalid spec: {spec}: empty section between colons"
                ));
            }
            if source.is_empty() && end {
                target = buf.clone();
            } else if source.is_empty() {
                source = buf.clone();
            } else if target.is_empty() {
                target = buf.clone();
            } else if c == ':' {
                return Err(format!("invalid spec: {spec}: too many colons"));
            }
            buf.clear();
        } else {
            buf.push(c);
        }
    }
    Ok((source, target))
}

/// docker/cli's CSV field splitting (`encoding/csv`, one record).
fn csv_fields(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cur.push('"');
                } else {
                    quoted = false;
                }
            } else {
                cur.push(c);
            }
            continue;
        }
        match c {
            '"' if at_start => {
                quoted = true;
                at_start = false;
            }
            '"' => {
                return Err(format!(
                    "parse error on line 1, column {}: bare \" in non-quoted-field",
                    cur.len() + 1
                ))
            }
            ',' => {
                out.push(std::mem::take(&mut cur));
                at_start = true;
            }
            c => {
                cur.push(c);
                at_start = false;
            }
        }
    }
    if quoted {
        return Err("parse error on line 1: extraneous or missing \" in quoted-field".into());
    }
    out.push(cur);
    Ok(out)
}

fn parse_bool(key: &str, val: &str, has_value: bool) -> Result<bool, String> {
    if !has_value {
        return Ok(true);
    }
    match val {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(format!(
            "invalid value for '{key}': invalid boolean value ({val:?}): must be one of \"true\", \"1\", \"false\", or \"0\" (default \"true\")"
        )),
    }
}

fn set_on_map(target: &mut Option<HashMap<String, String>>, kv: &str) {
    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
    if k.is_empty() {
        return;
    }
    target
        .get_or_insert_with(HashMap::new)
        .insert(k.to_string(), v.to_string());
}

/// One `--mount` value (docker/cli `MountOpt.Set`). A type the API has no name for is
/// refused here with the daemon's message, since it cannot be sent.
pub fn parse_mount(value: &str) -> Result<Mount, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("value is empty".into());
    }
    let mut typ = "volume".to_string();
    let mut m = Mount::default();
    let mut bind: Option<MountBindOptions> = None;
    let mut vol: Option<MountVolumeOptions> = None;
    let mut tmpfs: Option<MountTmpfsOptions> = None;
    let mut image: Option<MountImageOptions> = None;
    let mut propagation: Option<String> = None;
    for field in csv_fields(value)? {
        let (key, val, has) = match field.split_once('=') {
            Some((k, v)) => (k, v, true),
            None => (field.as_str(), "", false),
        };
        let k = key.trim();
        if k != key {
            return Err(format!(
                "invalid option '{k}' in '{field}': option should not have whitespace"
            ));
        }
        if has {
            let v = val.trim();
            if v.is_empty() {
                return Err(format!("invalid value for '{key}': value is empty"));
            }
            if v != val {
                return Err(format!(
                    "invalid value for '{key}' in '{field}': value should not have whitespace"
                ));
            }
        }
        let key = key.to_lowercase();
        if !has
            && !matches!(
                key.as_str(),
                "readonly" | "ro" | "volume-nocopy" | "bind-nonrecursive" | "bind-create-src"
            )
        {
            return Err(format!("invalid field '{field}' must be a key=value pair"));
        }
        match key.as_str() {
            "type" => typ = val.to_lowercase(),
            "source" | "src" => {
                let mut s = val.to_string();
                if !s.starts_with('/') && s.starts_with('.') {
                    if let Ok(cwd) = std::env::current_dir() {
                        s = clean(&cwd.join(&s).display().to_string());
                    }
                }
                m.source = Some(s);
            }
            "target" | "dst" | "destination" => m.target = Some(val.to_string()),
            "readonly" | "ro" => m.read_only = Some(parse_bool(&key, val, has)?),
            "consistency" => m.consistency = Some(val.to_lowercase()),
            "bind-propagation" => {
                bind.get_or_insert_with(Default::default);
                propagation = Some(val.to_lowercase());
            }
            "bind-nonrecursive" => {
                return Err(
                    "bind-nonrecursive is deprecated, use bind-recursive=disabled instead".into(),
                )
            }
            "bind-recursive" => {
                let b = bind.get_or_insert_with(Default::default);
                match val {
                    "enabled" => {}
                    "disabled" => b.non_recursive = Some(true),
                    "writable" => b.read_only_non_recursive = Some(true),
                    "readonly" => b.read_only_force_recursive = Some(true),
                    _ => {
                        return Err(format!(
                            "invalid value for {key}: {val} (must be \"enabled\", \"disabled\", \"writable\", or \"readonly\")"
                        ))
                    }
                }
            }
            "bind-create-src" => {
                bind.get_or_insert_with(Default::default).create_mountpoint =
                    Some(parse_bool(&key, val, has)?)
            }
            "volume-subpath" => {
                vol.get_or_insert_with(Default::default).subpath = Some(val.to_string())
            }
            "volume-nocopy" => {
                vol.get_or_insert_with(Default::default).no_copy = Some(parse_bool(&key, val, has)?)
            }
            "volume-label" => set_on_map(&mut vol.get_or_insert_with(Default::default).labels, val),
            "volume-driver" => {
                vol.get_or_insert_with(Default::default)
                    .driver_config
                    .get_or_insert_with(MountVolumeOptionsDriverConfig::default)
                    .name = Some(val.to_string())
            }
            "volume-opt" => set_on_map(
                &mut vol
                    .get_or_insert_with(Default::default)
                    .driver_config
                    .get_or_insert_with(MountVolumeOptionsDriverConfig::default)
                    .options,
                val,
            ),
            "image-subpath" => {
                image.get_or_insert_with(Default::default).subpath = Some(val.to_string())
            }
            "tmpfs-size" => {
                let n = crate::units::ram_in_bytes(val)
                    .map_err(|_| format!("invalid value for {key}: {val}"))?;
                tmpfs.get_or_insert_with(Default::default).size_bytes = Some(n);
            }
            "tmpfs-mode" => {
                let n = u32::from_str_radix(val, 8)
                    .map_err(|_| format!("invalid value for {key}: {val}"))?;
                tmpfs.get_or_insert_with(Default::default).mode = Some(n as i64);
            }
            _ => return Err(format!("unknown option '{key}' in '{field}'")),
        }
    }
    if typ.is_empty() {
        return Err("type is required".into());
    }
    for (set, what, own) in [
        (bind.is_some(), "bind", "bind"),
        (vol.is_some(), "volume", "volume"),
        (image.is_some(), "image", "image"),
        (tmpfs.is_some(), "tmpfs", "tmpfs"),
    ] {
        if set && typ != own {
            return Err(format!(
                "cannot mix '{what}-*' options with mount type '{typ}'"
            ));
        }
    }
    let ro = m.read_only.unwrap_or(false);
    if let Some(b) = &mut bind {
        if b.read_only_non_recursive == Some(true) && !ro {
            return Err("option 'bind-recursive=writable' requires 'readonly' to be specified in conjunction".into());
        }
        if b.read_only_force_recursive == Some(true) {
            if !ro {
                return Err("option 'bind-recursive=readonly' requires 'readonly' to be specified in conjunction".into());
            }
            if propagation.as_deref() != Some("rprivate") {
                return Err("option 'bind-recursive=readonly' requires 'bind-propagation=rprivate' to be specified in conjunction".into());
            }
        }
        if let Some(p) = &propagation {
            b.propagation = Some(p.parse::<MountBindOptionsPropagationEnum>().map_err(|_| {
                format!("invalid mount config for type \"{typ}\": invalid propagation mode: {p}")
            })?);
        }
    }
    m.typ = Some(
        typ.parse::<MountType>()
            .map_err(|_| format!("invalid mount config for type \"{typ}\": mount type unknown"))?,
    );
    m.bind_options = bind;
    m.volume_options = vol;
    m.tmpfs_options = tmpfs;
    m.image_options = image;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_specs() {
        let v = |s: &[&str]| split_volumes(&s.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        let (b, a) = v(&["/data", "vol:/x", "/h:/c:ro"]).unwrap();
        assert_eq!(b, vec!["vol:/x", "/h:/c:ro"]);
        assert_eq!(a, vec!["/data"]);
        // A drive-letter-looking "a:" keeps `a:b:c:d` whole: the daemon refuses it.
        assert_eq!(v(&["a:b:c:d"]).unwrap().0, vec!["a:b:c:d"]);
        assert_eq!(
            v(&["/a:/b:ro:x"]).unwrap_err(),
            "invalid spec: /a:/b:ro:x: too many colons"
        );
        assert_eq!(
            v(&["/a::b"]).unwrap_err(),
            "invalid spec: /a::b: empty section between colons"
        );
        let (b, _) = v(&["./x:/y"]).unwrap();
        assert!(b[0].starts_with('/') && b[0].ends_with("/x:/y"), "{b:?}");
    }

    #[test]
    fn mount_flags() {
        let m = parse_mount("type=bind,src=/a,dst=/b,readonly,bind-propagation=rshared").unwrap();
        assert_eq!(m.typ, Some(MountType::BIND));
        assert_eq!(m.read_only, Some(true));
        assert_eq!(
            m.bind_options.unwrap().propagation,
            Some(MountBindOptionsPropagationEnum::RSHARED)
        );
        let m = parse_mount("target=/data,volume-opt=type=tmpfs,volume-label=a=b").unwrap();
        assert_eq!(m.typ, Some(MountType::VOLUME));
        let vo = m.volume_options.unwrap();
        assert_eq!(vo.driver_config.unwrap().options.unwrap()["type"], "tmpfs");
        assert_eq!(vo.labels.unwrap()["a"], "b");
        let m = parse_mount("type=tmpfs,dst=/t,tmpfs-size=1m,tmpfs-mode=1770").unwrap();
        let t = m.tmpfs_options.unwrap();
        assert_eq!((t.size_bytes, t.mode), (Some(1 << 20), Some(0o1770)));
        assert_eq!(
            parse_mount("type=nosuch,dst=/x").unwrap_err(),
            "invalid mount config for type \"nosuch\": mount type unknown"
        );
        assert_eq!(
            parse_mount("type=volume,dst=/x,bind-propagation=shared").unwrap_err(),
            "cannot mix 'bind-*' options with mount type 'volume'"
        );
        assert_eq!(
            parse_mount("type=bind,foo=bar").unwrap_err(),
            "unknown option 'foo' in 'foo=bar'"
        );
        assert_eq!(
            parse_mount("type=bind,src").unwrap_err(),
            "invalid field 'src' must be a key=value pair"
        );
        assert_eq!(parse_mount("").unwrap_err(), "value is empty");
        assert_eq!(
            csv_fields("a=1,\"b=x,y\"").unwrap(),
            vec!["a=1".to_string(), "b=x,y".to_string()]
        );
    }
}
