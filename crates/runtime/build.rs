//! Links `berth-init` statically on glibc targets, so that `run --init` works in images
//! without a libc (busybox) or with another one (musl).
//!
//! Cargo cannot set `crt-static` for one binary, and rustc links the standard library
//! against `-lgcc_s -lc ...` after `-Wl,-Bdynamic`. So this binary gets `-static -no-pie`
//! plus a search directory, searched before the system's, whose `libc.so`, `libgcc_s.so`,
//! ... are linker scripts naming the static archives. Where an archive is missing (no
//! libc6-dev static libs), berth-init stays dynamic and a warning says so.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The system libraries rustc names for std on linux-gnu.
const LIBS: [&str; 7] = ["c", "util", "rt", "pthread", "m", "dl", "gcc_s"];

fn archive(cc: &str, name: &str) -> Option<PathBuf> {
    let out = Command::new(cc)
        .arg(format!("-print-file-name={name}"))
        .output()
        .ok()?;
    let p = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    // gcc prints the bare name back when it does not find the file.
    if p.is_absolute() && p.exists() {
        p.canonicalize().ok()
    } else {
        None
    }
}

fn write_scripts(cc: &str, dir: &Path) -> Result<(), String> {
    let gcc = archive(cc, "libgcc.a").ok_or("libgcc.a not found")?;
    let gcc_eh = archive(cc, "libgcc_eh.a").ok_or("libgcc_eh.a not found")?;
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    for lib in LIBS {
        let main = if lib == "gcc_s" {
            gcc_eh.clone()
        } else {
            archive(cc, &format!("lib{lib}.a")).ok_or(format!("lib{lib}.a not found"))?
        };
        let script = format!(
            "GROUP ( {} {} {} )\n",
            main.display(),
            gcc.display(),
            gcc_eh.display()
        );
        std::fs::write(dir.join(format!("lib{lib}.so")), script).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CC");
    // The shim stays resident for every container: as a position-dependent executable its
    // pointers in .data.rel.ro are final in the file, instead of ~440 KiB of pages that the
    // dynamic loader copies on write to relocate in each shim (see src/trim.rs).
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bin=berth-shim=-no-pie");
    }
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os != "linux" || env != "gnu" {
        // musl links statically by default; other targets have no container use.
        return;
    }
    let Some(out) = std::env::var_os("OUT_DIR") else {
        return;
    };
    let dir = PathBuf::from(out).join("static-libs");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    match write_scripts(&cc, &dir) {
        Ok(()) => {
            println!("cargo:rustc-link-arg-bin=berth-init=-static");
            println!("cargo:rustc-link-arg-bin=berth-init=-no-pie");
            println!("cargo:rustc-link-arg-bin=berth-init=-L{}", dir.display());
        }
        Err(e) => println!(
            "cargo:warning=berth-init is linked dynamically ({e}): `run --init` needs a \
             glibc in the image"
        ),
    }
}
