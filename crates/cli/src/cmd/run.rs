//! run, create, start, attach, exec: everything that may hijack a stream.

use bollard::exec::{CreateExecOptions, StartExecOptions};
use bollard::query_parameters::CreateContainerOptions;
use futures::StreamExt;
use http_body_util::BodyExt;
use hyper::Method;

use crate::args::{AttachArgs, ContainerOpts, CreateArgs, ExecArgs, RunArgs, StartArgs};
use crate::client::{daemon_error, q, CliError, CliResult, Client};
use crate::opts;
use crate::stream::{self, RawGuard, ResizeTarget, StreamEnd};

/// docker maps a failed start to 126 (cannot invoke), 127 (not found) or 125.
pub fn start_error_code(msg: &str) -> i32 {
    let m = msg.to_lowercase();
    // The first three are docker's patterns; the last two are youki's wording for the
    // same failures, in case the daemon passes it through unchanged.
    if m.contains("executable file not found")
        || m.contains("no such file or directory")
        || m.contains("system cannot find the file specified")
        || (m.contains("executable '") && m.contains("not found"))
    {
        127
    } else if m.contains("permission denied")
        || m.contains("exec format error")
        || m.contains("does not have correct permissions")
    {
        126
    } else {
        125
    }
}

/// docker's familiar reference with the default tag: "busybox" → "busybox:latest".
pub fn with_default_tag(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') || image.contains('@') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

/// Splits "repo:tag" (a port in the registry host is not a tag).
pub fn split_ref(r: &str) -> (String, String) {
    if let Some((repo, _digest)) = r.split_once('@') {
        return (repo.to_string(), String::new());
    }
    let slash = r.rfind('/').map(|i| i + 1).unwrap_or(0);
    match r[slash..].rfind(':') {
        Some(i) => (r[..slash + i].to_string(), r[slash + i + 1..].to_string()),
        None => (r.to_string(), String::new()),
    }
}

fn usage_err(msg: impl std::fmt::Display) -> CliError {
    CliError::new(125, msg.to_string())
}

/// Pulls an image through the daemon, printing its progress lines (to stderr for run and
/// create, to stdout for pull, as docker does).
async fn pull(c: &Client, image: &str, quiet: bool) -> CliResult<()> {
    pull_to(c, image, quiet, false).await
}

/// Like docker's CLI: a digest travels in `tag`; progress-bar messages are left out when
/// the output is plain lines.
pub async fn pull_to(c: &Client, image: &str, quiet: bool, to_stdout: bool) -> CliResult<()> {
    pull_with(c, image, quiet, to_stdout, false, None).await
}

/// `pull_to` with `--all-tags` (no tag sent: the daemon pulls every tag) and `--platform`.
pub async fn pull_with(
    c: &Client,
    image: &str,
    quiet: bool,
    to_stdout: bool,
    all_tags: bool,
    platform: Option<&str>,
) -> CliResult<()> {
    let (repo, tag) = match image.split_once('@') {
        Some((repo, digest)) => (repo.to_string(), digest.to_string()),
        None if all_tags => {
            let (repo, tag) = split_ref(image);
            if !tag.is_empty() {
                return Err(CliError::new(1, "tag can't be used with --all-tags/-a"));
            }
            (repo, String::new())
        }
        None => split_ref(&with_default_tag(image)),
    };
    let opts = bollard::query_parameters::CreateImageOptions {
        from_image: Some(repo),
        tag: (!tag.is_empty()).then_some(tag),
        platform: platform.unwrap_or_default().to_string(),
        ..Default::default()
    };
    let key = crate::config::server_key(&crate::config::image_domain(image));
    let creds = crate::config::get(&key).map(|(u, p)| bollard::auth::DockerCredentials {
        username: Some(u),
        password: Some(p),
        serveraddress: Some(key.clone()),
        ..Default::default()
    });
    let mut s = c.docker.create_image(Some(opts), None, creds);
    let mut r = crate::progress::Renderer::new(to_stdout, quiet);
    while let Some(item) = s.next().await {
        let info = match item {
            Ok(i) => i,
            Err(e) => {
                r.finish();
                return Err(c.err(e));
            }
        };
        let (cur, tot) = info
            .progress_detail
            .as_ref()
            .map(|d| (d.current.map(|v| v as u64), d.total.map(|v| v as u64)))
            .unwrap_or((None, None));
        if let Some(status) = info.status {
            r.message(info.id.as_deref(), &status, cur, tot);
        }
    }
    r.finish();
    Ok(())
}

fn is_no_such_image(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { status_code: 404, message }
        if message.to_lowercase().contains("no such image"))
}

/// Creates the container, pulling the image once if the daemon does not have it.
async fn create_container(
    c: &Client,
    o: &ContainerOpts,
    body: bollard::models::ContainerCreateBody,
    image: &str,
) -> CliResult<String> {
    let opts = CreateContainerOptions {
        name: o.name.clone(),
        platform: o.platform.clone().unwrap_or_default(),
    };
    if o.pull == "always" {
        pull(c, image, o.quiet).await?;
    }
    let res = match c
        .docker
        .create_container(Some(opts.clone()), body.clone())
        .await
    {
        Ok(r) => r,
        Err(e) if is_no_such_image(&e) && o.pull != "never" => {
            eprintln!("Unable to find image '{}' locally", with_default_tag(image));
            pull(c, image, o.quiet).await?;
            c.docker
                .create_container(Some(opts), body)
                .await
                .map_err(|e| c.err(e))?
        }
        Err(e) => return Err(c.err(e)),
    };
    for w in res.warnings {
        eprintln!("WARNING: {w}");
    }
    Ok(res.id)
}

pub async fn create(c: &Client, a: CreateArgs) -> CliResult<()> {
    let (image, cmd) = a
        .args
        .split_first()
        .ok_or_else(|| usage_err("requires at least 1 argument"))?;
    let parsed = opts::build(&a.opts, image, cmd, false).map_err(usage_err)?;
    // docker create reports daemon errors plainly, with exit status 1.
    let id = create_container(c, &a.opts, parsed.body, image).await?;
    println!("{id}");
    Ok(())
}

/// `docker run`'s own failures are "docker: ..." with status 125.
fn run_err(e: CliError) -> CliError {
    CliError::new(125, prefix(&e.msg))
}

fn prefix(msg: &str) -> String {
    if msg.is_empty() || msg.starts_with("berth: ") {
        msg.to_string()
    } else {
        format!("berth: {msg}")
    }
}

/// A `POST /containers/{id}/wait` whose response headers have arrived, so the daemon
/// has registered the wait (docker starts it before `start` for the same reason).
type WaitHandle = tokio::task::JoinHandle<CliResult<i64>>;

async fn start_wait(c: &Client, id: &str, condition: &str) -> CliResult<WaitHandle> {
    let path = format!("/containers/{}/wait?condition={condition}", q(id));
    let client = c.clone();
    let resp = client.raw_stream(Method::POST, &path, None, None).await?;
    let status = resp.status();
    Ok(tokio::spawn(async move {
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| CliError::new(1, format!("error waiting for container: {e}")))?
            .to_bytes();
        if !status.is_success() {
            return Err(daemon_error(status, &body));
        }
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| CliError::new(1, format!("error waiting for container: {e}")))?;
        if let Some(msg) = v
            .get("Error")
            .and_then(|e| e.get("Message"))
            .and_then(|m| m.as_str())
            .filter(|m| !m.is_empty())
        {
            return Err(CliError::new(125, format!("berth: {msg}")));
        }
        Ok(v.get("StatusCode").and_then(|s| s.as_i64()).unwrap_or(0))
    }))
}

struct Attached {
    output: stream::Output,
    input: stream::Input,
}

async fn attach_streams(
    c: &Client,
    id: &str,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    detach_keys: &str,
) -> CliResult<Attached> {
    let path = format!(
        "/containers/{}/attach?stream=1&stdin={}&stdout={}&stderr={}&detachKeys={}",
        q(id),
        stdin as u8,
        stdout as u8,
        stderr as u8,
        q(detach_keys)
    );
    let h = c.hijack(&path, None).await?;
    Ok(Attached {
        output: h.output,
        input: h.input,
    })
}

/// docker removes an --rm container whose start failed; the daemon may not have.
async fn remove_quietly(c: &Client, id: &str) {
    let opts = bollard::query_parameters::RemoveContainerOptions {
        force: true,
        ..Default::default()
    };
    let _ = c.docker.remove_container(id, Some(opts)).await;
}

fn exit_status(code: i64) -> CliResult<()> {
    if code == 0 {
        Ok(())
    } else {
        Err(CliError::status(code as i32))
    }
}

pub async fn run(c: &Client, a: RunArgs) -> CliResult<()> {
    let (image, cmd) = a
        .args
        .split_first()
        .ok_or_else(|| usage_err("requires at least 1 argument"))?;
    let keys_str = a
        .detach_keys
        .clone()
        .unwrap_or_else(|| stream::DEFAULT_DETACH_KEYS.to_string());
    let keys = stream::parse_detach_keys(&keys_str).map_err(usage_err)?;
    let o = &a.opts;
    let parsed = opts::build(o, image, cmd, a.detach).map_err(|e| {
        if e.starts_with("conflicting options") {
            // docker treats this one as a plain error (status 1).
            CliError::new(1, e)
        } else if e.starts_with("invalid argument") {
            // Flag-value errors come from docker's flag parser, without a prefix.
            usage_err(e)
        } else {
            CliError::new(125, format!("berth: {e}"))
        }
    })?;
    if o.tty && parsed.attach_stdin && !stream::stdin_is_tty() {
        return Err(CliError::new(1, "the input device is not a TTY"));
    }
    let mut body = parsed.body;
    if o.tty && !a.detach && stream::stdout_is_tty() {
        // Docker sends the terminal size with create (ConsoleSize), so the container's
        // TTY has the right size before the first resize call can land.
        if let (Some(hc), Some((h, w))) = (body.host_config.as_mut(), stream::tty_size()) {
            hc.console_size = Some(vec![h as usize, w as usize]);
        }
    }
    let id = create_container(c, o, body, image)
        .await
        .map_err(|e| CliError::new(125, prefix(&e.msg)))?;

    if a.detach {
        if let Err(e) = c
            .docker
            .start_container(
                &id,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
        {
            let e = c.err(e);
            if o.rm {
                remove_quietly(c, &id).await;
            }
            return Err(CliError::new(start_error_code(&e.msg), prefix(&e.msg)));
        }
        println!("{id}");
        return Ok(());
    }

    // With --rm the daemon removes the container; wait for that so a following
    // `ps -a` does not see it (docker waits for "removed" then).
    let condition = if o.rm { "removed" } else { "next-exit" };
    let wait = start_wait(c, &id, condition).await.map_err(run_err)?;

    let any_attach = parsed.attach_stdin || parsed.attach_stdout || parsed.attach_stderr;
    let attached = if any_attach {
        Some(
            attach_streams(
                c,
                &id,
                parsed.attach_stdin,
                parsed.attach_stdout,
                parsed.attach_stderr,
                &keys_str,
            )
            .await
            .map_err(|e| CliError::new(125, prefix(&e.msg)))?,
        )
    } else {
        None
    };

    let raw = if o.tty && parsed.attach_stdin {
        RawGuard::new()
    } else {
        None
    };

    if let Err(e) = c
        .docker
        .start_container(
            &id,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
    {
        drop(raw);
        let e = c.err(e);
        if o.rm {
            remove_quietly(c, &id).await;
        }
        return Err(CliError::new(start_error_code(&e.msg), prefix(&e.msg)));
    }

    let resize = (o.tty && stream::stdout_is_tty())
        .then(|| stream::monitor_tty_size(c.docker.clone(), ResizeTarget::Container(id.clone())));
    let sigs = (!o.tty && a.sig_proxy).then(|| stream::proxy_signals(c.docker.clone(), id.clone()));

    let mut end = StreamEnd::Eof;
    if let Some(att) = attached {
        let stdin = parsed.attach_stdin.then(stream::stdin_channel);
        let keys = (stream::stdin_is_tty() && parsed.attach_stdin).then(|| keys.clone());
        end = stream::pump(att.output, att.input, o.tty, stdin, keys)
            .await
            .map_err(run_err)?;
    }
    drop(raw);
    if let Some(r) = resize {
        r.abort();
    }
    if end == StreamEnd::Detached {
        return Ok(());
    }
    let code = wait
        .await
        .map_err(|e| CliError::new(125, format!("berth: {e}")))??;
    if let Some(s) = sigs {
        s.abort();
    }
    exit_status(code)
}

pub async fn start(c: &Client, a: StartArgs) -> CliResult<()> {
    if !(a.attach || a.interactive) {
        let mut failed = Vec::new();
        for name in &a.containers {
            match c
                .docker
                .start_container(
                    name,
                    None::<bollard::query_parameters::StartContainerOptions>,
                )
                .await
            {
                Ok(()) => println!("{name}"),
                Err(e) => {
                    eprintln!("{}", c.err(e).msg);
                    failed.push(name.clone());
                }
            }
        }
        if failed.is_empty() {
            return Ok(());
        }
        return Err(CliError::new(
            1,
            format!("Error: failed to start containers: {}", failed.join(", ")),
        ));
    }
    if a.containers.len() > 1 {
        return Err(CliError::new(
            1,
            "Error: you cannot start and attach multiple containers at once",
        ));
    }
    let name = &a.containers[0];
    let info = c
        .docker
        .inspect_container(
            name,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .map_err(|e| c.err(e))?;
    let id = info.id.clone().unwrap_or_else(|| name.clone());
    let cfg = info.config.unwrap_or_default();
    let tty = cfg.tty.unwrap_or(false);
    let stdin = a.interactive && cfg.open_stdin.unwrap_or(false);
    let keys_str = a
        .detach_keys
        .clone()
        .unwrap_or_else(|| stream::DEFAULT_DETACH_KEYS.to_string());
    let keys = stream::parse_detach_keys(&keys_str).map_err(usage_err)?;
    let auto_remove = info
        .host_config
        .and_then(|h| h.auto_remove)
        .unwrap_or(false);
    let wait = start_wait(c, &id, if auto_remove { "removed" } else { "next-exit" }).await?;
    let att = attach_streams(c, &id, stdin, true, true, &keys_str).await?;
    let raw = if tty && stdin { RawGuard::new() } else { None };
    if let Err(e) = c
        .docker
        .start_container(
            &id,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
    {
        drop(raw);
        let e = c.err(e);
        return Err(CliError::new(start_error_code(&e.msg), e.msg));
    }
    let resize = (tty && stream::stdout_is_tty())
        .then(|| stream::monitor_tty_size(c.docker.clone(), ResizeTarget::Container(id.clone())));
    let sigs = (!tty).then(|| stream::proxy_signals(c.docker.clone(), id.clone()));
    let stdin_rx = stdin.then(stream::stdin_channel);
    let keys = (stdin && stream::stdin_is_tty()).then_some(keys);
    let end = stream::pump(att.output, att.input, tty, stdin_rx, keys).await?;
    drop(raw);
    if let Some(r) = resize {
        r.abort();
    }
    if end == StreamEnd::Detached {
        return Ok(());
    }
    let code = wait.await.map_err(|e| CliError::new(1, e.to_string()))??;
    if let Some(s) = sigs {
        s.abort();
    }
    exit_status(code)
}

pub async fn attach(c: &Client, a: AttachArgs) -> CliResult<()> {
    let info = c
        .docker
        .inspect_container(
            &a.container,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .map_err(|e| c.err(e))?;
    let state = info.state.clone().unwrap_or_default();
    if !state.running.unwrap_or(false) {
        return Err(CliError::new(
            1,
            "You cannot attach to a stopped container, start it first",
        ));
    }
    if state.paused.unwrap_or(false) {
        return Err(CliError::new(
            1,
            "You cannot attach to a paused container, unpause it first",
        ));
    }
    let id = info.id.clone().unwrap_or_else(|| a.container.clone());
    let cfg = info.config.unwrap_or_default();
    let tty = cfg.tty.unwrap_or(false);
    let stdin = !a.no_stdin && cfg.open_stdin.unwrap_or(false);
    let keys_str = a
        .detach_keys
        .clone()
        .unwrap_or_else(|| stream::DEFAULT_DETACH_KEYS.to_string());
    let keys = stream::parse_detach_keys(&keys_str).map_err(usage_err)?;
    // Wait before attaching, as docker does: registered while the container runs, the
    // wait answers with the exit that ends our stream.
    let wait = start_wait(c, &id, "not-running").await?;
    let att = attach_streams(c, &id, stdin, true, true, &keys_str).await?;
    let raw = if tty && stdin { RawGuard::new() } else { None };
    let resize = (tty && stream::stdout_is_tty())
        .then(|| stream::monitor_tty_size(c.docker.clone(), ResizeTarget::Container(id.clone())));
    let sigs = (!tty && a.sig_proxy).then(|| stream::proxy_signals(c.docker.clone(), id.clone()));
    let stdin_rx = stdin.then(stream::stdin_channel);
    let keys = (stdin && stream::stdin_is_tty()).then_some(keys);
    let end = stream::pump(att.output, att.input, tty, stdin_rx, keys).await?;
    drop(raw);
    if let Some(r) = resize {
        r.abort();
    }
    if let Some(s) = sigs {
        s.abort();
    }
    if end == StreamEnd::Detached {
        return Ok(());
    }
    // The stream ended: report the container's exit code, as docker attach does.
    let code = wait.await.map_err(|e| CliError::new(1, e.to_string()))??;
    exit_status(code)
}

pub async fn exec(c: &Client, a: ExecArgs) -> CliResult<()> {
    let (container, cmd) = a
        .args
        .split_first()
        .ok_or_else(|| usage_err("requires at least 2 arguments"))?;
    let env = opts::collect_env(&a.env_file, &a.env).map_err(usage_err)?;
    let keys_str = a
        .detach_keys
        .clone()
        .unwrap_or_else(|| stream::DEFAULT_DETACH_KEYS.to_string());
    let keys = stream::parse_detach_keys(&keys_str).map_err(usage_err)?;
    if a.tty && a.interactive && !a.detach && !stream::stdin_is_tty() {
        return Err(CliError::new(1, "the input device is not a TTY"));
    }
    let opts = CreateExecOptions::<String> {
        attach_stdin: Some(a.interactive && !a.detach),
        attach_stdout: Some(!a.detach),
        attach_stderr: Some(!a.detach),
        tty: Some(a.tty),
        detach_keys: Some(keys_str),
        env: (!env.is_empty()).then_some(env),
        cmd: Some(cmd.to_vec()),
        privileged: Some(a.privileged),
        user: a.user.clone(),
        working_dir: a.workdir.clone(),
    };
    let created = c
        .docker
        .create_exec(container, opts)
        .await
        .map_err(|e| c.err(e))?;
    let exec_id = created.id;
    if a.detach {
        c.docker
            .start_exec(
                &exec_id,
                Some(StartExecOptions {
                    detach: true,
                    tty: a.tty,
                    output_capacity: None,
                }),
            )
            .await
            .map_err(|e| c.err(e))?;
        return Ok(());
    }
    let start_body = serde_json::json!({"Detach": false, "Tty": a.tty}).to_string();
    let h = c
        .hijack(&format!("/exec/{}/start", q(&exec_id)), Some(start_body))
        .await?;
    let (output, input) = (h.output, h.input);
    let raw = if a.tty && a.interactive {
        RawGuard::new()
    } else {
        None
    };
    let resize = (a.tty && stream::stdout_is_tty())
        .then(|| stream::monitor_tty_size(c.docker.clone(), ResizeTarget::Exec(exec_id.clone())));
    let stdin_rx = a.interactive.then(stream::stdin_channel);
    let keys = (a.interactive && stream::stdin_is_tty()).then_some(keys);
    let end = stream::pump(output, input, a.tty, stdin_rx, keys).await;
    drop(raw);
    if let Some(r) = resize {
        r.abort();
    }
    if end? == StreamEnd::Detached {
        return Ok(());
    }
    let info = c
        .docker
        .inspect_exec(&exec_id)
        .await
        .map_err(|e| c.err(e))?;
    exit_status(info.exit_code.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_errors_map_to_docker_exit_codes() {
        assert_eq!(
            start_error_code(
                "Error response from daemon: exec: \"nope\": executable file not found in $PATH"
            ),
            127
        );
        assert_eq!(start_error_code("open /x: no such file or directory"), 127);
        assert_eq!(start_error_code("exec /bin/x: permission denied"), 126);
        assert_eq!(start_error_code("cgroup failure"), 125);
        assert_eq!(
            start_error_code(
                "error in executing process : executable '/no/such' not found in $PATH"
            ),
            127
        );
        assert_eq!(
            start_error_code("executable '/etc/passwd' at path '\"/etc/passwd\"' does not have correct permissions"),
            126
        );
    }

    use super::super::fake_daemon::{FakeDaemon, Script};
    use crate::args::{Cli, Command};
    use clap::Parser;

    fn run_args(argv: &[&str]) -> RunArgs {
        match Cli::try_parse_from(argv) {
            Ok(Cli {
                command: Some(Command::Run(r)),
                ..
            }) => r,
            other => panic!("bad test argv: {other:?}"),
        }
    }

    fn script(start_error: Option<&str>, exit_code: i64) -> Script {
        Script {
            start_error: start_error.map(String::from),
            stdout: b"out\n".to_vec(),
            stderr: b"err\n".to_vec(),
            exit_code,
        }
    }

    #[tokio::test]
    async fn run_waits_attaches_then_starts_and_returns_the_exit_code() {
        let d = FakeDaemon::start(script(None, 3)).map_err(|e| e.to_string());
        let d = d.unwrap_or_else(|e| panic!("fake daemon: {e}"));
        let c = Client::new(&d.host).unwrap_or_else(|e| panic!("{e}"));
        let r = run(&c, run_args(&["berth", "run", "busybox", "sh"])).await;
        assert!(
            matches!(&r, Err(CliError { code: 3, msg }) if msg.is_empty()),
            "{r:?}"
        );
        let reqs: Vec<String> = d
            .requests()
            .into_iter()
            .map(|r| r.split('?').next().unwrap_or_default().to_string())
            .collect();
        assert_eq!(
            reqs,
            vec![
                "POST /containers/create",
                "POST /containers/c0ffee/wait",
                "POST /containers/c0ffee/attach",
                "POST /containers/c0ffee/start",
            ]
        );
        assert!(d.requests()[1].contains("condition=next-exit"));
    }

    #[tokio::test]
    async fn run_rm_waits_for_removal_and_exit_zero_is_ok() {
        let d = FakeDaemon::start(script(None, 0)).unwrap_or_else(|e| panic!("{e}"));
        let c = Client::new(&d.host).unwrap_or_else(|e| panic!("{e}"));
        let r = run(&c, run_args(&["berth", "run", "--rm", "busybox"])).await;
        assert!(r.is_ok(), "{r:?}");
        assert!(d.requests()[1].contains("condition=removed"));
    }

    #[tokio::test]
    async fn failed_start_maps_to_126_127() {
        let msg = "failed to create task: exec: \"nope\": executable file not found in $PATH";
        let d = FakeDaemon::start(script(Some(msg), 0)).unwrap_or_else(|e| panic!("{e}"));
        let c = Client::new(&d.host).unwrap_or_else(|e| panic!("{e}"));
        let r = run(&c, run_args(&["berth", "run", "busybox", "nope"])).await;
        match r {
            Err(e) => {
                assert_eq!(e.code, 127);
                assert_eq!(e.msg, format!("berth: Error response from daemon: {msg}"));
            }
            Ok(()) => panic!("start error was ignored"),
        }
        let d = FakeDaemon::start(script(Some("exec: \"/etc\": permission denied"), 0))
            .unwrap_or_else(|e| panic!("{e}"));
        let c = Client::new(&d.host).unwrap_or_else(|e| panic!("{e}"));
        let r = run(&c, run_args(&["berth", "run", "-d", "busybox", "/etc"])).await;
        assert!(matches!(r, Err(CliError { code: 126, .. })), "{r:?}");
    }

    #[tokio::test]
    async fn daemon_errors_are_dockers_line() {
        let d = FakeDaemon::start(script(None, 0)).unwrap_or_else(|e| panic!("{e}"));
        let c = Client::new(&d.host).unwrap_or_else(|e| panic!("{e}"));
        let e = c.get_json("/nope").await.err().map(|e| (e.code, e.msg));
        assert_eq!(
            e,
            Some((
                1,
                "Error response from daemon: page not found: /nope".to_string()
            ))
        );
    }

    #[test]
    fn references() {
        assert_eq!(with_default_tag("busybox"), "busybox:latest");
        assert_eq!(with_default_tag("busybox:1.36"), "busybox:1.36");
        assert_eq!(
            with_default_tag("localhost:5000/busybox"),
            "localhost:5000/busybox:latest"
        );
        assert_eq!(with_default_tag("a@sha256:00"), "a@sha256:00");
        assert_eq!(
            split_ref("localhost:5000/a:b"),
            ("localhost:5000/a".into(), "b".into())
        );
        assert_eq!(split_ref("busybox"), ("busybox".into(), String::new()));
    }
}
