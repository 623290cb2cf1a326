//! `docker login` / `docker logout`: the daemon checks the credentials with the registry
//! (POST /auth); they are kept in the client config file (crate::config).

use crate::args::{LoginArgs, LogoutArgs};
use crate::client::{daemon_error, CliError, CliResult, Client};
use crate::config;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Method;
use std::io::{BufRead, IsTerminal, Write};

fn read_line_stdin() -> CliResult<String> {
    let mut s = String::new();
    std::io::stdin().lock().read_line(&mut s)?;
    Ok(s.trim_end_matches(['\n', '\r']).to_string())
}

/// A password prompt with echo off (the terminal is restored afterwards).
fn read_password(prompt: &str) -> CliResult<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    use std::os::fd::AsFd;
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let stdin = std::io::stdin();
    let saved = tcgetattr(stdin.as_fd()).ok();
    if let Some(t) = &saved {
        let mut quiet = t.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &quiet);
    }
    let r = read_line_stdin();
    if let Some(t) = &saved {
        let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, t);
    }
    eprintln!();
    r
}

pub async fn login(c: &Client, a: LoginArgs) -> CliResult<()> {
    let key = config::server_key(
        a.server
            .as_deref()
            .map(|s| {
                s.trim_start_matches("https://")
                    .trim_start_matches("http://")
            })
            .unwrap_or("docker.io"),
    );
    if a.password.is_some() && a.password_stdin {
        return Err(CliError::new(
            1,
            "--password and --password-stdin are mutually exclusive",
        ));
    }
    let mut password = a.password.clone().unwrap_or_default();
    if a.password.is_some() {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
    }
    if a.password_stdin {
        if a.username.is_none() {
            return Err(CliError::new(
                1,
                "Must provide --username with --password-stdin",
            ));
        }
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        password = s.trim_end_matches(['\n', '\r']).to_string();
    }
    let interactive = std::io::stdin().is_terminal();
    let username = match &a.username {
        Some(u) => u.clone(),
        None if interactive => {
            eprint!("Username: ");
            let _ = std::io::stderr().flush();
            read_line_stdin()?
        }
        None => {
            return Err(CliError::new(
                1,
                "Cannot perform an interactive login from a non TTY device",
            ))
        }
    };
    if username.is_empty() {
        return Err(CliError::new(1, "Username cannot be empty"));
    }
    if password.is_empty() {
        if !interactive {
            return Err(CliError::new(
                1,
                "Cannot perform an interactive login from a non TTY device",
            ));
        }
        password = read_password("Password: ")?;
    }
    if password.is_empty() {
        return Err(CliError::new(1, "Password cannot be empty"));
    }
    let body = serde_json::json!({
        "username": username,
        "password": password,
        "serveraddress": key,
    })
    .to_string();
    let resp = c
        .raw_stream(
            Method::POST,
            "/auth",
            Some(
                Full::new(Bytes::from(body))
                    .map_err(|never| match never {})
                    .boxed(),
            ),
            Some("application/json"),
        )
        .await?;
    let status = resp.status();
    let b = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if !status.is_success() {
        return Err(daemon_error(status, &b));
    }
    config::store(&key, &username, &password).map_err(|e| CliError::new(1, e))?;
    eprintln!(
        "WARNING! Your password will be stored unencrypted in {}.",
        config::path().display()
    );
    println!("Login Succeeded");
    Ok(())
}

pub async fn logout(_c: &Client, a: LogoutArgs) -> CliResult<()> {
    let shown = a
        .server
        .clone()
        .unwrap_or_else(|| config::HUB_KEY.to_string());
    let key = config::server_key(
        a.server
            .as_deref()
            .map(|s| {
                s.trim_start_matches("https://")
                    .trim_start_matches("http://")
            })
            .unwrap_or("docker.io"),
    );
    if config::erase(&key).map_err(|e| CliError::new(1, e))? {
        println!("Removing login credentials for {shown}");
    } else {
        println!("Not logged in to {shown}");
    }
    Ok(())
}
