//! `berth-shim`: the per-container shim process (see `src/shim/mod.rs`).

#[path = "../shim/mod.rs"]
mod shim;

fn main() {
    std::process::exit(shim::main());
}
