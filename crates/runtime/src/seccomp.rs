//! Docker's default seccomp profile and the conversion of Docker-format profiles
//! (`archMap`, `includes`/`excludes` by caps, arches and `minKernel`) to the OCI
//! `LinuxSeccomp` for this machine.
//!
//! One deliberate difference from a plain conversion: syscalls the profile does not know
//! fail with `ENOSYS`, not `EPERM`, so that newer libcs fall back to older syscalls
//! (runc gets this with a BPF stub; we get it by making `ENOSYS` the default action and
//! denying every syscall name we *do* know with the profile's own errno).

use std::collections::{BTreeSet, HashSet};

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall,
};
use serde::Deserialize;

use crate::error::{Result, RuntimeError};

/// moby's `profiles/seccomp/default.json`, verbatim (see data/SOURCES.md).
pub const DEFAULT_PROFILE_JSON: &str = include_str!("../data/seccomp-default.json");

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    #[serde(default)]
    default_action: Option<LinuxSeccompAction>,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Option<Vec<Arch>>,
    #[serde(default)]
    arch_map: Option<Vec<ArchMapEntry>>,
    #[serde(default)]
    flags: Option<Vec<LinuxSeccompFilterFlag>>,
    #[serde(default)]
    syscalls: Option<Vec<ProfileSyscall>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMapEntry {
    architecture: Arch,
    #[serde(default)]
    sub_architectures: Option<Vec<Arch>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileSyscall {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    names: Option<Vec<String>>,
    action: LinuxSeccompAction,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<LinuxSeccompArg>>,
    #[serde(default)]
    includes: Option<Filter>,
    #[serde(default)]
    excludes: Option<Filter>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// This machine as the profile names it (Go's GOARCH spelling as mapped by moby).
fn native_arch() -> (&'static str, Option<Arch>) {
    match std::env::consts::ARCH {
        "x86_64" => ("amd64", Some(Arch::ScmpArchX86_64)),
        "aarch64" => ("arm64", Some(Arch::ScmpArchAarch64)),
        "x86" => ("x86", Some(Arch::ScmpArchX86)),
        "arm" => ("arm", Some(Arch::ScmpArchArm)),
        "riscv64" => ("riscv64", Some(Arch::ScmpArchRiscv64)),
        "s390x" => ("s390x", Some(Arch::ScmpArchS390x)),
        "powerpc64" => ("ppc64le", Some(Arch::ScmpArchPpc64le)),
        other => (other, None),
    }
}

fn kernel_version() -> Option<(u64, u64)> {
    let uts = nix::sys::utsname::uname().ok()?;
    parse_kernel_version(&uts.release().to_string_lossy())
}

fn parse_kernel_version(s: &str) -> Option<(u64, u64)> {
    let mut it = s.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

fn kernel_at_least(min: &str, current: Option<(u64, u64)>) -> Result<bool> {
    let want = parse_kernel_version(min)
        .filter(|_| min.split('.').count() == 2)
        .ok_or_else(|| {
            RuntimeError::InvalidArgument(format!(
                "invalid kernel version: \"{min}\", expected \"<kernel>.<major>\""
            ))
        })?;
    // An unknown running kernel counts as new enough: the rules gated this way only
    // allow syscalls that exist since long ago.
    Ok(current.is_none_or(|cur| cur >= want))
}

/// Docker's default profile for a container with the given bounding capabilities
/// (`"CAP_SYS_ADMIN"` spelling).
pub fn default_profile(bounding_caps: &[String]) -> Result<LinuxSeccomp> {
    // Parsed once per process: this runs on every container start.
    static DEFAULT: std::sync::OnceLock<Profile> = std::sync::OnceLock::new();
    let profile = match DEFAULT.get() {
        Some(p) => p.clone(),
        None => {
            let p = parse_profile(DEFAULT_PROFILE_JSON)?;
            DEFAULT.get_or_init(|| p).clone()
        }
    };
    convert(profile, bounding_caps, kernel_version())
}

fn parse_profile(json: &str) -> Result<Profile> {
    serde_json::from_str(json)
        .map_err(|e| RuntimeError::InvalidArgument(format!("Decoding seccomp profile failed: {e}")))
}

/// Converts a Docker-format seccomp profile (as given to `--security-opt seccomp=<file>`)
/// for this machine and a container with the given bounding capabilities.
pub fn load_profile(json: &str, bounding_caps: &[String]) -> Result<LinuxSeccomp> {
    convert(parse_profile(json)?, bounding_caps, kernel_version())
}

fn convert(profile: Profile, caps: &[String], kernel: Option<(u64, u64)>) -> Result<LinuxSeccomp> {
    let (arch_name, arch) = native_arch();
    let has_cap = |c: &String| caps.iter().any(|b| b.eq_ignore_ascii_case(c));

    if profile
        .architectures
        .as_ref()
        .is_some_and(|a| !a.is_empty())
        && profile.arch_map.as_ref().is_some_and(|a| !a.is_empty())
    {
        return Err(RuntimeError::InvalidArgument(
            "both 'architectures' and 'archMap' are specified in the seccomp profile, use either 'architectures' or 'archMap'".into(),
        ));
    }
    let mut architectures = profile.architectures.clone().unwrap_or_default();
    if let (Some(arch), Some(map)) = (arch, profile.arch_map.as_ref()) {
        if let Some(entry) = map.iter().find(|e| e.architecture == arch) {
            architectures.push(entry.architecture);
            architectures.extend(entry.sub_architectures.iter().flatten().copied());
        }
    }

    let default_action = profile
        .default_action
        .unwrap_or(LinuxSeccompAction::ScmpActErrno);
    let default_errno = profile.default_errno_ret;

    let mut mentioned: BTreeSet<String> = BTreeSet::new();
    let mut syscalls: Vec<LinuxSyscall> = Vec::new();
    'rules: for rule in profile.syscalls.unwrap_or_default() {
        let names = match (rule.name, rule.names) {
            (Some(_), Some(n)) if !n.is_empty() => {
                return Err(RuntimeError::InvalidArgument(
                    "both 'name' and 'names' are specified in the seccomp profile, use either 'name' or 'names'".into(),
                ))
            }
            (Some(n), _) => vec![n],
            (None, n) => n.unwrap_or_default(),
        };
        mentioned.extend(names.iter().cloned());
        if let Some(ex) = &rule.excludes {
            if ex.arches.iter().flatten().any(|a| a == arch_name) {
                continue 'rules;
            }
            if ex.caps.iter().flatten().any(has_cap) {
                continue 'rules;
            }
            if let Some(k) = &ex.min_kernel {
                if kernel_at_least(k, kernel)? {
                    continue 'rules;
                }
            }
        }
        if let Some(inc) = &rule.includes {
            if let Some(arches) = &inc.arches {
                if !arches.is_empty() && !arches.iter().any(|a| a == arch_name) {
                    continue 'rules;
                }
            }
            if !inc.caps.iter().flatten().all(has_cap) {
                continue 'rules;
            }
            if let Some(k) = &inc.min_kernel {
                if !kernel_at_least(k, kernel)? {
                    continue 'rules;
                }
            }
        }
        let mut sc = LinuxSyscall::default();
        sc.set_names(names);
        sc.set_action(rule.action);
        sc.set_errno_ret(rule.errno_ret);
        sc.set_args(rule.args.filter(|a| !a.is_empty()));
        syscalls.push(sc);
    }

    let mut out = LinuxSeccomp::default();
    out.set_flags(profile.flags.filter(|f| !f.is_empty()));
    out.set_architectures(Some(architectures).filter(|a| !a.is_empty()));

    if default_action == LinuxSeccompAction::ScmpActErrno {
        let deny_errno = default_errno.unwrap_or(libc::EPERM as u32);
        let mut known: BTreeSet<String> = mentioned;
        known.extend(native_syscall_names());
        syscalls.extend(deny_rules(&syscalls, &known, deny_errno));
        out.set_default_action(LinuxSeccompAction::ScmpActErrno);
        out.set_default_errno_ret(Some(libc::ENOSYS as u32));
    } else {
        out.set_default_action(default_action);
        out.set_default_errno_ret(default_errno);
    }
    out.set_syscalls(Some(syscalls));
    Ok(out)
}

/// Rules that give every known syscall without a rule of its own the profile's errno,
/// so only syscalls unknown to both the profile and libseccomp hit the ENOSYS default.
/// Syscalls allowed only for some arguments also get the complement of those arguments
/// where one rule per argument can express it; what cannot be expressed (personality's
/// odd personas) falls to ENOSYS.
fn deny_rules(rules: &[LinuxSyscall], known: &BTreeSet<String>, errno: u32) -> Vec<LinuxSyscall> {
    let mut unconditional: HashSet<&str> = HashSet::new();
    let mut conditional: Vec<(&str, &[LinuxSeccompArg])> = Vec::new();
    for r in rules {
        for n in r.names() {
            match r.args().as_deref() {
                None | Some([]) => {
                    unconditional.insert(n);
                }
                Some(args) if r.action() == LinuxSeccompAction::ScmpActAllow => {
                    conditional.push((n, args));
                }
                Some(_) => {}
            }
        }
    }
    let mut out = Vec::new();
    let mut plain: Vec<String> = Vec::new();
    let cond_names: HashSet<&str> = conditional.iter().map(|(n, _)| *n).collect();
    for name in known {
        if unconditional.contains(name.as_str()) || cond_names.contains(name.as_str()) {
            continue;
        }
        plain.push(name.clone());
    }
    if !plain.is_empty() {
        let mut sc = LinuxSyscall::default();
        sc.set_names(plain);
        sc.set_action(LinuxSeccompAction::ScmpActErrno);
        sc.set_errno_ret(Some(errno));
        out.push(sc);
    }
    // Complements of the conditional allows, where they can be written down.
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    for (name, _) in &conditional {
        if unconditional.contains(name) || !seen.insert(name) {
            continue;
        }
        let args: Vec<&[LinuxSeccompArg]> = conditional
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, a)| *a)
            .collect();
        for a in complement(&args) {
            let mut sc = LinuxSyscall::default();
            sc.set_names(vec![name.to_string()]);
            sc.set_action(LinuxSeccompAction::ScmpActErrno);
            sc.set_errno_ret(Some(errno));
            sc.set_args(Some(vec![a]));
            out.push(sc);
        }
    }
    out
}

fn arg(
    index: usize,
    op: LinuxSeccompOperator,
    value: u64,
    value_two: Option<u64>,
) -> LinuxSeccompArg {
    // Fields are only settable through the builder; it cannot fail with all set.
    let b = LinuxSeccompArgBuilder::default()
        .index(index)
        .op(op)
        .value(value);
    let b = match value_two {
        Some(v2) => b.value_two(v2),
        None => b,
    };
    b.build().unwrap_or_default()
}

/// Single-comparison rules whose union is the complement of the union of `rules` (each
/// a list of ANDed comparisons), or as much of it as one comparison per rule can say.
fn complement(rules: &[&[LinuxSeccompArg]]) -> Vec<LinuxSeccompArg> {
    use LinuxSeccompOperator::*;
    // (x & mask) == 0 fails iff some bit of the mask is set: one rule per bit, each
    // written with value == valueTwo so it reads the same whichever field a runtime
    // takes as the mask (libcontainer 0.7 swaps them, see `adapt_for_libcontainer`).
    if let [[a]] = rules {
        if a.op() == ScmpCmpMaskedEq {
            if a.value_two().unwrap_or(0) != 0 {
                return Vec::new();
            }
            return (0..64)
                .map(|b| 1u64 << b)
                .filter(|bit| a.value() & bit != 0)
                .map(|bit| arg(a.index(), ScmpCmpMaskedEq, bit, Some(bit)))
                .collect();
        }
    }
    // Otherwise: ranges over one argument.
    let Some(index) = rules.first().and_then(|r| r.first()).map(|a| a.index()) else {
        return Vec::new();
    };
    let mut allowed: Vec<(u64, u64)> = Vec::new();
    for r in rules {
        let [a] = r else { return Vec::new() };
        if a.index() != index {
            return Vec::new();
        }
        let v = a.value();
        match a.op() {
            ScmpCmpEq => allowed.push((v, v)),
            ScmpCmpLe => allowed.push((0, v)),
            ScmpCmpGe => allowed.push((v, u64::MAX)),
            ScmpCmpLt if v > 0 => allowed.push((0, v - 1)),
            ScmpCmpGt if v < u64::MAX => allowed.push((v + 1, u64::MAX)),
            ScmpCmpNe => {
                if v > 0 {
                    allowed.push((0, v - 1));
                }
                if v < u64::MAX {
                    allowed.push((v + 1, u64::MAX));
                }
            }
            ScmpCmpLt | ScmpCmpGt => {}
            ScmpCmpMaskedEq => return Vec::new(),
        }
    }
    allowed.sort_unstable();
    let mut gaps: Vec<(u64, u64)> = Vec::new();
    let mut next: Option<u64> = Some(0); // first value not yet covered; None = past MAX
    for (lo, hi) in allowed {
        let Some(n) = next else { break };
        if lo > n {
            gaps.push((n, lo - 1));
        }
        if hi >= n {
            next = hi.checked_add(1);
        }
    }
    if let Some(n) = next {
        gaps.push((n, u64::MAX));
    }
    gaps.into_iter()
        .filter_map(|(lo, hi)| match (lo, hi) {
            _ if lo == hi => Some(arg(index, ScmpCmpEq, lo, None)),
            (0, _) => Some(arg(index, ScmpCmpLe, hi, None)),
            (_, u64::MAX) => Some(arg(index, ScmpCmpGe, lo, None)),
            // A bounded range (personality's odd personas) falls to the ENOSYS default.
            _ => None,
        })
        .collect()
}

/// Every syscall name libseccomp knows for this machine's native arch. Computed once: it is
/// 1,024 table searches in libseccomp, which showed up in every container's start.
fn native_syscall_names() -> Vec<String> {
    static NAMES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    NAMES
        .get_or_init(|| {
            let arch = libseccomp::ScmpArch::native();
            (0..1024)
                .filter_map(|nr| {
                    libseccomp::ScmpSyscall::from(nr)
                        .get_name_by_arch(arch)
                        .ok()
                })
                .collect()
        })
        .clone()
}

/// youki's libcontainer 0.7 reads `SCMP_CMP_MASKED_EQ` with the mask in `valueTwo` and
/// the datum in `value`, the other way round from the runtime spec, runc and crun (so
/// Docker's `clone` rule would match every clone, namespace flags included; see the
/// kernel test below). `spec::generate` applies it unless
/// `SpecOptions::libcontainer_quirks` is false; never apply it for runc or crun.
pub fn adapt_for_libcontainer(seccomp: &mut LinuxSeccomp) {
    let Some(mut syscalls) = seccomp.syscalls().clone() else {
        return;
    };
    for sc in &mut syscalls {
        let Some(mut args) = sc.args().clone() else {
            continue;
        };
        for a in &mut args {
            if a.op() == LinuxSeccompOperator::ScmpCmpMaskedEq {
                let (v, v2) = (a.value(), a.value_two().unwrap_or(0));
                *a = arg(a.index(), a.op(), v2, Some(v));
            }
        }
        sc.set_args(Some(args));
    }
    seccomp.set_syscalls(Some(syscalls));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_caps() -> Vec<String> {
        crate::spec::DEFAULT_CAPS
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    fn rules_for<'a>(s: &'a LinuxSeccomp, name: &str) -> Vec<&'a LinuxSyscall> {
        s.syscalls()
            .iter()
            .flatten()
            .filter(|r| r.names().iter().any(|n| n == name))
            .collect()
    }

    fn allowed(s: &LinuxSeccomp, name: &str) -> bool {
        rules_for(s, name)
            .iter()
            .any(|r| r.action() == LinuxSeccompAction::ScmpActAllow && r.args().is_none())
    }

    #[test]
    fn default_profile_converts() {
        let s = default_profile(&default_caps()).unwrap();
        assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(s.default_errno_ret(), Some(libc::ENOSYS as u32));
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            s.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
        );
        assert!(allowed(&s, "read"));
        assert!(allowed(&s, "chroot")); // CAP_SYS_CHROOT is a default cap
        #[cfg(target_arch = "x86_64")]
        assert!(allowed(&s, "arch_prctl"));
        assert!(!allowed(&s, "arm_fadvise64_64"));
    }

    #[test]
    fn cap_gated_rules_follow_caps() {
        let s = default_profile(&default_caps()).unwrap();
        assert!(!allowed(&s, "mount"));
        let deny = rules_for(&s, "mount");
        assert_eq!(deny.len(), 1);
        assert_eq!(deny[0].action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(deny[0].errno_ret(), Some(1));
        // clone: allowed without namespace flags; with them, EPERM per flag bit.
        let clone = rules_for(&s, "clone");
        assert!(clone
            .iter()
            .any(|r| r.action() == LinuxSeccompAction::ScmpActAllow
                && r.args()
                    .as_ref()
                    .is_some_and(|a| a[0].value() == 2114060288)));
        assert_eq!(
            clone
                .iter()
                .filter(|r| r.action() == LinuxSeccompAction::ScmpActErrno)
                .count(),
            7
        );
        // The socket families the profile leaves out (AF_VSOCK...) are denied explicitly.
        let denied: Vec<u64> = rules_for(&s, "socket")
            .iter()
            .filter(|r| r.action() == LinuxSeccompAction::ScmpActErrno)
            .map(|r| r.args().as_ref().unwrap()[0])
            .inspect(|a| assert_eq!(a.op(), LinuxSeccompOperator::ScmpCmpEq))
            .map(|a| a.value())
            .collect();
        assert!(denied.contains(&40), "{denied:?}");

        let mut caps = default_caps();
        caps.push("CAP_SYS_ADMIN".into());
        let s = default_profile(&caps).unwrap();
        assert!(allowed(&s, "mount"));
        assert!(allowed(&s, "clone"));
        assert!(rules_for(&s, "clone")
            .iter()
            .all(|r| r.action() == LinuxSeccompAction::ScmpActAllow));
    }

    #[test]
    fn known_denied_get_eperm_and_unknown_default_enosys() {
        let s = default_profile(&default_caps()).unwrap();
        // keyctl is not in the profile at all but libseccomp knows it.
        let r = rules_for(&s, "keyctl");
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].errno_ret(), Some(libc::EPERM as u32));
        // clone3 keeps the profile's own ENOSYS.
        assert!(rules_for(&s, "clone3")
            .iter()
            .all(|r| r.errno_ret() == Some(libc::ENOSYS as u32)));
    }

    #[test]
    fn complements() {
        use LinuxSeccompOperator::*;
        let a = |op, v| arg(0, op, v, None);
        let got = |rules: &[&[LinuxSeccompArg]]| -> Vec<(LinuxSeccompOperator, u64)> {
            complement(rules)
                .iter()
                .map(|a| (a.op(), a.value()))
                .collect()
        };
        assert_eq!(got(&[&[a(ScmpCmpNe, 40)]]), vec![(ScmpCmpEq, 40)]);
        assert_eq!(
            got(&[
                &[a(ScmpCmpLt, 38)],
                &[a(ScmpCmpEq, 39)],
                &[a(ScmpCmpGt, 40)]
            ]),
            vec![(ScmpCmpEq, 38), (ScmpCmpEq, 40)]
        );
        assert_eq!(
            got(&[&[a(ScmpCmpEq, 0)], &[a(ScmpCmpEq, 8)]]),
            vec![(ScmpCmpGe, 9)] // 1..=7 cannot be said in one comparison
        );
        assert_eq!(got(&[&[a(ScmpCmpGe, 0)]]), vec![]);
    }

    #[test]
    fn min_kernel_and_errors() {
        assert!(kernel_at_least("4.8", Some((6, 18))).unwrap());
        assert!(!kernel_at_least("6.19", Some((6, 18))).unwrap());
        assert!(kernel_at_least("4.x", Some((6, 18))).is_err());
        let err = load_profile("{", &[]).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("Decoding seccomp profile failed"));
        // A custom profile with a kill default is taken as written.
        let s = load_profile(
            r#"{"defaultAction":"SCMP_ACT_KILL","syscalls":[{"name":"read","action":"SCMP_ACT_ALLOW"}]}"#,
            &[],
        )
        .unwrap();
        assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActKill);
        assert_eq!(s.syscalls().as_ref().map(|v| v.len()), Some(1));
    }

    #[test]
    fn adapt_swaps_masked_eq_only() {
        let mut s = default_profile(&default_caps()).unwrap();
        adapt_for_libcontainer(&mut s);
        let clone = rules_for(&s, "clone");
        let allow = clone
            .iter()
            .find(|r| r.action() == LinuxSeccompAction::ScmpActAllow)
            .unwrap();
        let a = allow.args().as_ref().unwrap()[0];
        assert_eq!((a.value(), a.value_two()), (0, Some(2114060288)));
        let sock = rules_for(&s, "socket");
        assert!(sock
            .iter()
            .all(|r| r.args().as_ref().unwrap()[0].value_two().is_none()));
    }
}

/// Loads generated profiles into the kernel through libcontainer, in a child process of
/// the test binary (a filter cannot be removed once loaded).
#[cfg(test)]
mod kernel_tests {
    use super::*;

    const CHILD_ENV: &str = "BERTH_SECCOMP_CHILD";

    fn errno_of(ret: libc::c_long) -> i32 {
        if ret == -1 {
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
        } else {
            0
        }
    }

    /// Runs in the child only: loads the profile, probes syscalls, prints results.
    #[test]
    #[ignore = "helper run by loaded_profile_behaves_like_docker_with_enosys"]
    fn child_probe() {
        let Ok(mode) = std::env::var(CHILD_ENV) else {
            return;
        };
        let caps: Vec<String> = crate::spec::DEFAULT_CAPS
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut profile = default_profile(&caps).unwrap();
        if mode == "adapted" {
            adapt_for_libcontainer(&mut profile);
        }
        libcontainer::seccomp::initialize_seccomp(&profile).unwrap();
        // SAFETY: raw syscalls with arguments the kernel validates; a clone that
        // unexpectedly succeeds exits at once in the child.
        unsafe {
            let pid = libc::fork();
            if pid == 0 {
                libc::_exit(0);
            }
            let fork_errno = if pid < 0 { errno_of(-1) } else { 0 };
            if pid > 0 {
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
            let mount = errno_of(libc::syscall(
                libc::SYS_mount,
                c"none".as_ptr(),
                c"/nonexistent".as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                0,
            ));
            let keyctl = errno_of(libc::syscall(libc::SYS_keyctl, 0, 0, 0, 0, 0));
            // No such syscall anywhere: the default action answers.
            let unknown = errno_of(libc::syscall(1000, 0, 0, 0, 0));
            // statmount (457): allowed by the profile but unknown to libseccomp 2.5.4, so
            // its rule is skipped; ENOSYS (as runc's stub gives) lets libcs fall back.
            let newer = errno_of(libc::syscall(457, 0, 0, 0, 0));
            let vsock = errno_of(libc::socket(40, libc::SOCK_STREAM, 0) as libc::c_long);
            let r = libc::syscall(
                libc::SYS_clone,
                (libc::CLONE_NEWNS | libc::SIGCHLD) as libc::c_ulong,
                0,
                0,
                0,
                0,
            );
            if r == 0 {
                libc::_exit(0);
            }
            let clone_ns = errno_of(r);
            println!(
                "RESULT fork={fork_errno} mount={mount} keyctl={keyctl} unknown={unknown} newer={newer} vsock={vsock} clone_ns={clone_ns}"
            );
        }
    }

    fn run_child(mode: &str) -> String {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "seccomp::kernel_tests::child_probe",
                "--ignored",
                "--nocapture",
            ])
            .env(CHILD_ENV, mode)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("RESULT ").map(String::from))
            .unwrap_or_else(|| panic!("no result in {stdout}"))
    }

    #[test]
    fn loaded_profile_behaves_like_docker_with_enosys() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let (eperm, enosys) = (libc::EPERM, libc::ENOSYS);
        assert_eq!(
            run_child("adapted"),
            format!("fork=0 mount={eperm} keyctl={eperm} unknown={enosys} newer={enosys} vsock={eperm} clone_ns={eperm}")
        );
        // Why the adaptation exists: unadapted, libcontainer 0.7 turns Docker's clone
        // rule into "allow every clone", namespace flags included. If this starts
        // failing, libcontainer was fixed and `adapt_for_libcontainer` must go.
        assert!(
            run_child("raw").ends_with("clone_ns=0"),
            "libcontainer's MASKED_EQ handling changed"
        );
    }
}
