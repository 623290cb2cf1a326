//! berth: a docker-compatible command line client for berthd (or any Docker Engine API).

mod args;
mod client;
mod cmd;
mod config;
mod jsonfmt;
mod mounts;
mod opts;
mod progress;
mod stream;
mod table;
mod tmpl;
mod units;

use clap::Parser;

use crate::args::Cli;
use crate::client::{resolve_host, CliError, Client};

fn main() {
    // Die quietly on a closed pipe (`berth logs x | head`), as Go programs do, instead
    // of printing "Broken pipe".
    // SAFETY: setting a signal disposition to the default before any threads exist.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let _ = e.print();
                    std::process::exit(0);
                }
                // `berth container` alone: usage on stdout, status 0, as docker does.
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    print!("{}", e.render());
                    std::process::exit(0);
                }
                _ => {
                    // docker exits 125 on usage errors, with its own wording for the
                    // two most common ones.
                    use clap::error::ContextKind;
                    let arg = match e.get(ContextKind::InvalidArg) {
                        Some(clap::error::ContextValue::String(s)) => Some(s.clone()),
                        _ => None,
                    };
                    match (e.kind(), arg) {
                        (ErrorKind::UnknownArgument, Some(a)) => {
                            let flag = a.split('=').next().unwrap_or(&a).to_string();
                            match flag.strip_prefix('-').filter(|f| !f.starts_with('-')) {
                                // pflag names the letter and the word it was found in.
                                Some(short) => {
                                    let word = std::env::args()
                                        .find(|w| w.starts_with(&flag))
                                        .unwrap_or_else(|| flag.clone());
                                    let letter = short.chars().next().unwrap_or('?');
                                    eprintln!("unknown shorthand flag: '{letter}' in {word}\nSee 'berth --help'.");
                                }
                                None => eprintln!("unknown flag: {flag}\nSee 'berth --help'."),
                            }
                        }
                        (ErrorKind::InvalidSubcommand, _) => {
                            let name = match e.get(ContextKind::InvalidSubcommand) {
                                Some(clap::error::ContextValue::String(s)) => s.clone(),
                                _ => String::new(),
                            };
                            eprintln!("berth: unknown command: berth {name}\n\nRun 'berth --help' for more information");
                        }
                        _ => {
                            let _ = e.print();
                        }
                    }
                    std::process::exit(125);
                }
            }
        }
    };
    if cli.version {
        println!(
            "berth version {}, build {}",
            env!("CARGO_PKG_VERSION"),
            option_env!("BERTH_GIT_COMMIT").unwrap_or("unknown")
        );
        std::process::exit(0);
    }
    // One thread: the CLI waits on one thing at a time, and a second thread only added a
    // wake-up and a context switch to every read of an attached stream (stdin is read on a
    // plain thread of its own, see stream::stdin_channel).
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth: cannot start runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(run(cli));
    // Exit without dropping the runtime: a blocking stdin read would otherwise keep
    // the process alive after the container has gone.
    std::process::exit(code);
}

async fn run(cli: Cli) -> i32 {
    let Some(command) = cli.command else {
        use clap::CommandFactory;
        let _ = Cli::command().print_help();
        return 0;
    };
    use crate::args::{Command, ContainerCommand};
    let is_run = matches!(
        command,
        Command::Run(_) | Command::Container(ContainerCommand::Run(_))
    );
    let host = resolve_host(cli.host.as_deref());
    let result = match Client::new(&host) {
        Ok(client) => cmd::dispatch(&client, command).await,
        // `docker run` reports even a missing daemon as "docker: ..." with status 125.
        Err(e) if is_run => Err(CliError::new(125, format!("berth: {}", e.msg))),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => 0,
        Err(CliError { msg, code }) => {
            if !msg.is_empty() {
                eprintln!("{msg}");
            }
            code
        }
    }
}
