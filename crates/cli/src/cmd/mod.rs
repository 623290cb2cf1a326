//! Command implementations.

mod build;
mod container;
mod cp;
#[cfg(test)]
mod fake_daemon;
mod image;
mod inspect;
mod login;
mod netvol;
mod ps;
mod run;
mod stats;
mod system;

use crate::args::{BuilderCommand, Command, ContainerCommand, ImageCommand, SystemCommand};
use crate::client::{CliError, CliResult, Client};

pub async fn dispatch(c: &Client, cmd: Command) -> CliResult<()> {
    use Command as C;
    match cmd {
        C::Run(a) => run::run(c, a).await,
        C::Create(a) => run::create(c, a).await,
        C::Start(a) => run::start(c, a).await,
        C::Ps(a) => ps::ps(c, a).await,
        C::Inspect(a) => inspect::inspect(c, a, None).await,
        C::Logs(a) => container::logs(c, a).await,
        C::Attach(a) => run::attach(c, a).await,
        C::Exec(a) => run::exec(c, a).await,
        C::Stop(a) => container::stop(c, a).await,
        C::Kill(a) => container::kill(c, a).await,
        C::Restart(a) => container::restart(c, a).await,
        C::Rm(a) => container::rm(c, a).await,
        C::Rename(a) => container::rename(c, a).await,
        C::Pause(a) => container::pause(c, a, true).await,
        C::Unpause(a) => container::pause(c, a, false).await,
        C::Top(a) => container::top(c, a).await,
        C::Wait(a) => container::wait(c, a).await,
        C::Images(a) => image::images(c, a).await,
        C::Rmi(a) => image::rmi(c, a).await,
        C::Tag(a) => image::tag(c, a).await,
        C::Load(a) => image::load(c, a).await,
        C::Pull(a) => image::pull(c, a).await,
        C::Push(a) => build::push(c, a).await,
        C::Registry(a) => registry(a),
        C::Login(a) => login::login(c, a).await,
        C::Logout(a) => login::logout(c, a).await,
        C::Save(a) => image::save(c, a).await,
        C::Build(a) => build::build(c, a).await,
        C::Builder(BuilderCommand::Build(a)) => build::build(c, *a).await,
        C::Builder(BuilderCommand::Prune(a)) => build::prune(c, a).await,
        C::Import(a) => image::import(c, a).await,
        C::History(a) => image::history(c, a).await,
        C::Version(a) => system::version(c, a).await,
        C::Info(a) => system::info(c, a).await,
        C::Port(a) => container::port(c, a).await,
        C::Diff(a) => container::diff(c, a).await,
        C::Export(a) => container::export(c, a).await,
        C::Commit(a) => container::commit(c, a).await,
        C::Stats(a) => stats::stats(c, a).await,
        C::Events(a) => system::events(c, a).await,
        C::Cp(a) => cp::cp(c, a).await,
        C::Update(a) => container::update(c, a).await,
        C::Container(sub) => container_cmd(c, sub).await,
        C::Volume(sub) => netvol::volume(c, sub).await,
        C::Network(sub) => netvol::network(c, sub).await,
        C::Image(sub) => image_cmd(c, sub).await,
        C::System(SystemCommand::Info(a)) => system::info(c, a).await,
        C::System(SystemCommand::Events(a)) => system::events(c, a).await,
        C::System(SystemCommand::Df(a)) => system::df(c, a).await,
        C::System(SystemCommand::Prune(a)) => system::prune(c, a).await,
    }
}

async fn container_cmd(c: &Client, cmd: ContainerCommand) -> CliResult<()> {
    use ContainerCommand as C;
    match cmd {
        C::Attach(a) => run::attach(c, a).await,
        C::Create(a) => run::create(c, a).await,
        C::Exec(a) => run::exec(c, a).await,
        C::Inspect(a) => inspect::inspect(c, a, Some("container")).await,
        C::Kill(a) => container::kill(c, a).await,
        C::Logs(a) => container::logs(c, a).await,
        C::Ls(a) => ps::ps(c, a).await,
        C::Pause(a) => container::pause(c, a, true).await,
        C::Prune(a) => container::prune(c, a).await,
        C::Rename(a) => container::rename(c, a).await,
        C::Restart(a) => container::restart(c, a).await,
        C::Rm(a) => container::rm(c, a).await,
        C::Run(a) => run::run(c, a).await,
        C::Start(a) => run::start(c, a).await,
        C::Stop(a) => container::stop(c, a).await,
        C::Top(a) => container::top(c, a).await,
        C::Unpause(a) => container::pause(c, a, false).await,
        C::Wait(a) => container::wait(c, a).await,
        C::Port(a) => container::port(c, a).await,
        C::Diff(a) => container::diff(c, a).await,
        C::Export(a) => container::export(c, a).await,
        C::Commit(a) => container::commit(c, a).await,
        C::Cp(a) => cp::cp(c, a).await,
        C::Update(a) => container::update(c, a).await,
        C::Stats(a) => stats::stats(c, a).await,
    }
}

async fn image_cmd(c: &Client, cmd: ImageCommand) -> CliResult<()> {
    use ImageCommand as C;
    match cmd {
        C::History(a) => image::history(c, a).await,
        C::Import(a) => image::import(c, a).await,
        C::Inspect(a) => inspect::inspect(c, a, Some("image")).await,
        C::Load(a) => image::load(c, a).await,
        C::Pull(a) => image::pull(c, a).await,
        C::Push(a) => build::push(c, a).await,
        C::Ls(a) => image::images(c, a).await,
        C::Prune(a) => image::prune(c, a).await,
        C::Rm(a) => image::rmi(c, a).await,
        C::Save(a) => image::save(c, a).await,
        C::Tag(a) => image::tag(c, a).await,
        C::Build(a) => build::build(c, *a).await,
    }
}

/// Runs `f` for each name, printing each daemon error on its own line and failing with
/// exit 1 at the end if any did (docker's behaviour for stop/kill/rm/...).
pub async fn for_each<F, Fut>(names: &[String], mut f: F) -> CliResult<()>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = CliResult<()>>,
{
    let mut failed = false;
    for n in names {
        if let Err(e) = f(n.clone()).await {
            failed = true;
            if !e.msg.is_empty() {
                eprintln!("{}", e.msg);
            }
        }
    }
    if failed {
        Err(CliError::status(1))
    } else {
        Ok(())
    }
}

/// `--filter k=v` flags as the API's JSON filters map.
pub fn filters_json(filters: &[String]) -> CliResult<Option<String>> {
    if filters.is_empty() {
        return Ok(None);
    }
    let mut m: std::collections::BTreeMap<String, std::collections::BTreeMap<String, bool>> =
        Default::default();
    for f in filters {
        let (k, v) = f.split_once('=').ok_or_else(|| {
            CliError::new(
                125,
                format!("invalid argument \"{f}\" for \"-f, --filter\" flag: bad format of filter (expected name=value)"),
            )
        })?;
        m.entry(k.trim().to_lowercase())
            .or_default()
            .insert(v.to_string(), true);
    }
    serde_json::to_string(&m)
        .map(Some)
        .map_err(|e| CliError::new(1, e.to_string()))
}

/// Prints docker's confirmation prompt and reads the answer.
pub fn confirm(warning: &str) -> bool {
    use std::io::Write;
    print!("{warning}\nAre you sure you want to continue? [y/N] ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim().to_lowercase().as_str(), "y" | "yes")
}

/// `berth registry ...`: runs the registry server binary (installed next to `berth`), which
/// is engine code the CLI does not link.
fn registry(a: crate::args::RegistryArgs) -> CliResult<()> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("berth-registry")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| std::path::PathBuf::from("berth-registry"));
    let err = std::process::Command::new(&exe).args(&a.args).exec();
    Err(CliError::new(
        127,
        format!("cannot run {}: {err}", exe.display()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_docker_json() {
        let f = filters_json(&[
            "status=exited".into(),
            "label=a=b".into(),
            "status=created".into(),
        ]);
        assert_eq!(
            f.ok().flatten().as_deref(),
            Some(r#"{"label":{"a=b":true},"status":{"created":true,"exited":true}}"#)
        );
        assert!(filters_json(&["nope".into()]).is_err());
        assert!(matches!(filters_json(&[]), Ok(None)));
    }
}
