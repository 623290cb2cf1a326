//! docker's JSON progress messages drawn like docker's CLI: per-layer bars on a terminal
//! (indicatif), plain "id: status" lines otherwise (no bar messages).

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;

pub struct Renderer {
    tty: bool,
    quiet: bool,
    to_stdout: bool,
    mp: MultiProgress,
    bars: HashMap<String, ProgressBar>,
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix}: {msg:<12} [{bar:40}] {bytes}/{total_bytes}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

fn line_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix}: {msg}").unwrap_or_else(|_| ProgressStyle::default_bar())
}

impl Renderer {
    pub fn new(to_stdout: bool, quiet: bool) -> Renderer {
        let tty = if to_stdout {
            std::io::stdout().is_terminal()
        } else {
            std::io::stderr().is_terminal()
        };
        let target = if to_stdout {
            ProgressDrawTarget::stdout()
        } else {
            ProgressDrawTarget::stderr()
        };
        Renderer {
            tty,
            quiet,
            to_stdout,
            mp: MultiProgress::with_draw_target(target),
            bars: HashMap::new(),
        }
    }

    fn plain(&self, line: &str) {
        if self.to_stdout {
            println!("{line}");
        } else {
            eprintln!("{line}");
        }
    }

    /// One message: `id`, `status`, and the progressDetail numbers if any.
    pub fn message(
        &mut self,
        id: Option<&str>,
        status: &str,
        current: Option<u64>,
        total: Option<u64>,
    ) {
        if self.quiet {
            return;
        }
        let has_bar = current.is_some() || total.is_some();
        if !self.tty {
            if has_bar {
                return;
            }
            match id {
                Some(id) if !id.is_empty() => self.plain(&format!("{id}: {status}")),
                _ => self.plain(status),
            }
            return;
        }
        let Some(id) = id.filter(|i| !i.is_empty()) else {
            let _ = self.mp.println(status);
            return;
        };
        let pb = self.bars.entry(id.to_string()).or_insert_with(|| {
            let pb = self.mp.add(ProgressBar::new(0));
            pb.set_style(line_style());
            pb.set_prefix(id.to_string());
            pb
        });
        if has_bar {
            pb.set_style(bar_style());
            if let Some(t) = total.filter(|t| *t > 0) {
                pb.set_length(t);
            }
            pb.set_position(current.unwrap_or(0));
        } else {
            pb.set_style(line_style());
        }
        pb.set_message(status.to_string());
    }

    /// Leaves the bars drawn as they ended.
    pub fn finish(&mut self) {
        for pb in self.bars.values() {
            pb.abandon();
        }
    }
}
