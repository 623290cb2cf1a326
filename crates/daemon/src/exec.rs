//! docker exec: extra processes in a running container, each with its own exec shim.

use crate::containers::Ctr;
use crate::state::State;
use berth_api::models;
use berth_api::Error;
use berth_runtime::client::{ExecConfig, ShimClient};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

pub struct Exec {
    pub id: String,
    pub container_id: String,
    pub config: models::ExecConfig,
    pub st: Mutex<ExecState>,
    pub done: watch::Sender<bool>,
}

#[derive(Default, Clone)]
pub struct ExecState {
    pub running: bool,
    pub started: bool,
    pub exit_code: Option<i64>,
    pub pid: i64,
    pub dir: Option<PathBuf>,
}

impl Exec {
    pub fn state(&self) -> ExecState {
        self.st.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    pub fn client(&self) -> Option<ShimClient> {
        self.state().dir.map(|d| ShimClient::new(&d))
    }
    pub fn started(&self, pid: u32) {
        let mut s = self.st.lock().unwrap_or_else(|p| p.into_inner());
        s.running = true;
        s.pid = pid as i64;
    }
    pub fn finish(&self, code: i64) {
        {
            let mut s = self.st.lock().unwrap_or_else(|p| p.into_inner());
            s.running = false;
            s.exit_code = Some(code);
        }
        self.done.send_replace(true);
    }
}

impl State {
    pub fn exec_lookup(&self, id: &str) -> Result<Arc<Exec>, Error> {
        self.execs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("No such exec instance: {id}")))
    }

    pub fn exec_create(&self, c: &Arc<Ctr>, cfg: models::ExecConfig) -> Result<String, Error> {
        let rec = c.rec();
        if !rec.state.running {
            return Err(Error::conflict(format!(
                "Container {} is not running",
                c.id
            )));
        }
        if rec.state.paused {
            return Err(Error::conflict(format!(
                "Container {} is paused, unpause the container before exec",
                c.id
            )));
        }
        if cfg.cmd.as_ref().map(|c| c.is_empty()).unwrap_or(true) {
            return Err(Error::invalid("No exec command specified"));
        }
        let id = crate::util::new_id();
        let ex = Arc::new(Exec {
            id: id.clone(),
            container_id: c.id.clone(),
            config: cfg,
            st: Mutex::new(ExecState::default()),
            done: watch::channel(false).0,
        });
        self.execs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), ex);
        Ok(id)
    }

    /// Creates the exec's process (not yet started) and returns its shim client.
    pub async fn exec_prepare(&self, ex: &Arc<Exec>, tty: bool) -> Result<ShimClient, Error> {
        let c = self.lookup(&ex.container_id)?;
        let rec = c.rec();
        if !rec.state.running {
            return Err(Error::conflict(format!(
                "Container {} is not running",
                c.id
            )));
        }
        {
            let mut s = ex.st.lock().unwrap_or_else(|p| p.into_inner());
            if s.started {
                return Err(Error::conflict(format!(
                    "Error: Exec command {} is already running",
                    ex.id
                )));
            }
            s.started = true;
        }
        let cdir = self.container_dir(&c.id);
        let dir = cdir.join("exec").join(&ex.id);
        std::fs::create_dir_all(&dir)?;
        let spec = oci_spec::runtime::Spec::load(cdir.join("config.json"))
            .map_err(|e| Error::internal(format!("reading container spec: {e}")))?;
        let rootfs = cdir.join("rootfs");
        let cfg = &ex.config;
        let opts = berth_runtime::spec::ExecOptions {
            args: cfg.cmd.clone().unwrap_or_default(),
            env: cfg.env.clone().unwrap_or_default(),
            cwd: cfg.working_dir.clone().unwrap_or_default(),
            user: cfg.user.clone().unwrap_or_default(),
            tty,
            privileged: cfg.privileged.unwrap_or(false),
        };
        let process = tokio::task::spawn_blocking(move || {
            berth_runtime::spec::exec_process(&spec, &rootfs, &opts)
        })
        .await
        .map_err(|e| Error::internal(e.to_string()))?
        .map_err(Error::from)?;
        let ec = ExecConfig {
            exec_id: ex.id.clone(),
            dir: dir.clone(),
            process,
            tty,
            open_stdin: cfg.attach_stdin.unwrap_or(false),
            shim_binary: self.shim_binary.clone(),
            state_root: self.runtime_root.clone(),
            container_id: c.id.clone(),
        };
        let client = ShimClient::new(&cdir);
        let exec_client = client
            .exec(&ec)
            .await
            .map_err(|e| Error::invalid(e.to_string()))?;
        {
            let mut s = ex.st.lock().unwrap_or_else(|p| p.into_inner());
            s.dir = Some(dir);
        }
        Ok(exec_client)
    }

    pub fn exec_inspect(&self, ex: &Exec) -> models::ExecInspectResponse {
        let s = ex.state();
        let cmd = ex.config.cmd.clone().unwrap_or_default();
        models::ExecInspectResponse {
            can_remove: Some(false),
            detach_keys: Some(ex.config.detach_keys.clone().unwrap_or_default()),
            id: Some(ex.id.clone()),
            running: Some(s.running),
            exit_code: s.exit_code,
            process_config: Some(models::ProcessConfig {
                privileged: Some(ex.config.privileged.unwrap_or(false)),
                user: Some(ex.config.user.clone().unwrap_or_default()),
                tty: Some(ex.config.tty.unwrap_or(false)),
                entrypoint: cmd.first().cloned(),
                arguments: Some(cmd.iter().skip(1).cloned().collect()),
            }),
            open_stdin: Some(ex.config.attach_stdin.unwrap_or(false)),
            open_stderr: Some(ex.config.attach_stderr.unwrap_or(false)),
            open_stdout: Some(ex.config.attach_stdout.unwrap_or(false)),
            container_id: Some(ex.container_id.clone()),
            pid: Some(s.pid),
        }
    }
}
