//! The builder: dispatches a parsed Dockerfile stage by stage over a [`Backend`] (the
//! daemon: images, step containers, layer commits, the cache table).
//!
//! Docker's classic builder is the model for output and image shape: `Step N/M : ...`
//! lines, one image per step (config-only steps are empty layers), `#(nop)` history
//! entries. The cache is ours: the key of a step is its parent image, the config it
//! produces, its history line (which carries the build args it sees and, for COPY/ADD,
//! a digest of the content it reads), so a hit is exact and needs no file access.

use crate::dockerfile::{self, Command, CopyArgs, Instruction, ShellOrExec, Stage};
use crate::lex::Lexer;
use berth_api::models;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Build args docker accepts without an ARG line (and never warns about).
const PREDEFINED_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Api(#[from] berth_api::Error),
    /// A RUN step exited non-zero; `code` becomes errorDetail.code (the CLI's exit code).
    #[error("{message}")]
    Run { message: String, code: i64 },
}

impl BuildError {
    fn invalid(m: impl Into<String>) -> Self {
        BuildError::Api(berth_api::Error::invalid(m))
    }
    pub fn code(&self) -> Option<i64> {
        match self {
            BuildError::Run { code, .. } => Some(*code),
            BuildError::Api(_) => None,
        }
    }
}

impl From<dockerfile::ParseError> for BuildError {
    fn from(e: dockerfile::ParseError) -> Self {
        BuildError::invalid(format!("Dockerfile parse error: {e}"))
    }
}

impl From<crate::lex::LexError> for BuildError {
    fn from(e: crate::lex::LexError) -> Self {
        BuildError::invalid(e.to_string())
    }
}

/// One message of docker's build stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    Stream(String),
    Aux(serde_json::Value),
    /// Passed through as is (pull progress of a FROM image).
    Raw(serde_json::Value),
}

pub type Out = Arc<dyn Fn(Msg) + Send + Sync>;

fn say(out: &Out, s: impl Into<String>) {
    out(Msg::Stream(s.into()))
}

/// The `/build` query, as far as the builder needs it.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The Dockerfile's name in the context (for messages).
    pub dockerfile: String,
    pub tags: Vec<String>,
    /// `--build-arg`; None = declared without a value (the CLI found no env var).
    pub build_args: HashMap<String, Option<String>>,
    pub labels: BTreeMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    pub pull: bool,
    pub rm: bool,
    pub force_rm: bool,
    pub network_mode: Option<String>,
    pub platform: Option<String>,
}

#[derive(Debug, Clone)]
pub struct BaseImage {
    /// "" for scratch.
    pub id: String,
    pub config: models::ImageConfig,
}

/// A RUN step: a container of `parent` running `cmd`, committed when it exits 0.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub parent: String,
    pub cmd: Vec<String>,
    /// The image's env plus the build args in scope (not stored in the image).
    pub env: Vec<String>,
    /// The image config the step's image gets.
    pub config: models::ImageConfig,
    pub created_by: String,
    pub network: Option<String>,
    pub rm: bool,
    pub force_rm: bool,
    /// For the "The command '...' returned a non-zero code" message.
    pub display: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CopySource {
    Context,
    /// An image's rootfs ("" = scratch): `COPY --from`.
    Image(String),
}

/// A COPY or ADD step.
#[derive(Debug, Clone)]
pub struct CopySpec {
    pub source: CopySource,
    /// Source paths as written (after substitution), relative to the source root;
    /// may hold Go `filepath.Match` wildcards; for ADD also http(s) URLs.
    pub sources: Vec<String>,
    /// `COPY <<EOF /dest`: (name, content).
    pub heredocs: Vec<(String, String)>,
    /// Absolute destination in the image.
    pub dest: String,
    /// The destination names a directory (trailing `/`).
    pub dest_is_dir: bool,
    /// `--chown` as written (user[:group], names resolved in the image).
    pub chown: Option<String>,
    pub chmod: Option<u32>,
    pub exclude: Vec<String>,
    /// ADD: local tar archives are extracted, URLs fetched.
    pub add: bool,
    pub instruction: &'static str,
}

/// What the daemon gives the builder. Every method may block on I/O; all are async.
pub trait Backend: Send + Sync {
    /// A base image by reference, pulled when missing (or always with `pull`).
    fn base_image(
        &self,
        name: &str,
        pull: bool,
        platform: Option<&str>,
        out: Out,
    ) -> impl Future<Output = Result<BaseImage, BuildError>> + Send;
    /// Runs a RUN step; returns the committed image id.
    fn run(
        &self,
        spec: RunSpec,
        out: Out,
    ) -> impl Future<Output = Result<String, BuildError>> + Send;
    /// `file:<hex>`, `dir:<hex>` or `multi:<hex>`: a digest of everything the COPY/ADD
    /// would write (names, content, mode, ownership; not mtime). Fails like the copy
    /// would on a missing or escaping source.
    fn copy_digest(
        &self,
        parent: &str,
        spec: &CopySpec,
    ) -> impl Future<Output = Result<String, BuildError>> + Send;
    fn copy(
        &self,
        parent: &str,
        spec: &CopySpec,
        config: &models::ImageConfig,
        created_by: &str,
    ) -> impl Future<Output = Result<String, BuildError>> + Send;
    /// WORKDIR: creates `dir` (root-owned, 0755) when missing and commits.
    fn workdir(
        &self,
        parent: &str,
        dir: &str,
        config: &models::ImageConfig,
        created_by: &str,
    ) -> impl Future<Output = Result<String, BuildError>> + Send;
    /// A config-only step: an empty layer on `parent`.
    fn commit_config(
        &self,
        parent: &str,
        config: &models::ImageConfig,
        created_by: &str,
        author: Option<&str>,
    ) -> impl Future<Output = Result<String, BuildError>> + Send;
    /// The image a cache key names, if it still exists.
    fn cache_get(&self, key: &str) -> impl Future<Output = Option<String>> + Send;
    fn cache_put(&self, key: &str, image_id: &str) -> impl Future<Output = ()> + Send;
    /// Tags the image; returns the tag as docker prints it ("name:latest").
    fn tag(
        &self,
        image_id: &str,
        tag: &str,
    ) -> impl Future<Output = Result<String, BuildError>> + Send;
}

pub fn short_id(id: &str) -> &str {
    let h = id.strip_prefix("sha256:").unwrap_or(id);
    &h[..h.len().min(12)]
}

/// Go's `%q` of a string slice: `["a" "b"]` (history lines of CMD/ENTRYPOINT).
fn go_q(v: &[String]) -> String {
    let items: Vec<String> = v
        .iter()
        .map(|s| serde_json::to_string(s).unwrap_or_default())
        .collect();
    format!("[{}]", items.join(" "))
}

/// Go's `%v` of a string slice: `[a b]`.
fn go_v(v: &[String]) -> String {
    format!("[{}]", v.join(" "))
}

fn default_shell() -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into()]
}

/// `path.Clean` for absolute paths.
pub fn clean_abs(p: &str) -> String {
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

/// Per-stage dispatch state.
struct StageState {
    image: String,
    config: models::ImageConfig,
    /// ARGs declared in this stage, with their values.
    args: Vec<(String, Option<String>)>,
    cmd_set: bool,
    author: Option<String>,
}

impl StageState {
    fn shell(&self) -> Vec<String> {
        self.config
            .shell
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(default_shell)
    }

    fn env_get(&self, name: &str) -> Option<String> {
        if let Some(env) = &self.config.env {
            for e in env.iter().rev() {
                let (k, v) = e.split_once('=').unwrap_or((e, ""));
                if k == name {
                    return Some(v.to_string());
                }
            }
        }
        self.args
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.clone())
    }

    fn env_has(&self, name: &str) -> bool {
        self.config.env.as_ref().is_some_and(|env| {
            env.iter()
                .any(|e| e.split_once('=').map(|(k, _)| k).unwrap_or(e) == name)
        })
    }

    fn set_env(&mut self, k: &str, v: &str) {
        let env = self.config.env.get_or_insert_with(Vec::new);
        let kv = format!("{k}={v}");
        match env
            .iter_mut()
            .find(|e| e.split_once('=').map(|(ek, _)| ek).unwrap_or(e) == k)
        {
            Some(e) => *e = kv,
            None => env.push(kv),
        }
    }

    /// Build args visible to RUN as env (docker's BuildArgs.FilterAllowed: declared with
    /// a value and not shadowed by ENV), sorted.
    fn run_args(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (k, v) in self.args.iter().rev() {
            if !seen.insert(k.clone()) || self.env_has(k) {
                continue;
            }
            if let Some(v) = v {
                out.push(format!("{k}={v}"));
            }
        }
        out.sort();
        out
    }
}

struct StageResult {
    image: String,
    config: models::ImageConfig,
}

/// The whole build. Returns the final image id (tagged with `opts.tags`).
pub async fn build<B: Backend>(
    backend: &B,
    dockerfile_src: &str,
    opts: &BuildOptions,
    out: Out,
) -> Result<String, BuildError> {
    let name = if opts.dockerfile.is_empty() {
        "Dockerfile"
    } else {
        opts.dockerfile.as_str()
    };
    let df = dockerfile::parse(name, dockerfile_src)?;
    let lex = Lexer::new(df.escape);
    let used: Mutex<HashSet<String>> = Mutex::new(HashSet::new());

    // Global ARGs (before the first FROM): usable in FROM lines, and as defaults for
    // a stage's bare `ARG name`.
    let mut meta: Vec<(String, Option<String>)> = Vec::new();
    for a in &df.meta_args {
        let v = match opts.build_args.get(&a.name) {
            Some(v) => {
                lock(&used).insert(a.name.clone());
                v.clone()
            }
            None => match &a.default {
                Some(d) => {
                    let m = meta.clone();
                    Some(lex.process_word(d, &|n| lookup(&m, n))?)
                }
                None => None,
            },
        };
        meta.push((a.name.clone(), v));
    }

    let stages = &df.stages;
    let target = match opts.target.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => {
            let t = t.to_lowercase();
            stages
                .iter()
                .position(|s| s.name.as_deref() == Some(t.as_str()))
                .ok_or_else(|| {
                    BuildError::invalid(format!("failed to reach build target {t} in Dockerfile"))
                })?
        }
        None => stages.len().saturating_sub(1),
    };
    let deps: Vec<Vec<usize>> = (0..stages.len())
        .map(|i| {
            // FROM lines see only the global ARGs, known now: resolve them exactly.
            let base = dockerfile::expand_from(&stages[i], &lex, &|k| lookup(&meta, k))
                .map(|(b, _)| b)
                .unwrap_or_else(|_| stages[i].base.clone());
            stage_deps(stages, i, &base)
        })
        .collect();
    // Stages the target needs, transitively; the others are skipped.
    let mut needed = vec![false; stages.len()];
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if !needed[i] {
            needed[i] = true;
            todo.extend(deps[i].iter().copied());
        }
    }
    // The label step `--label` adds to the target stage, as docker's classic builder.
    let label_step = (!opts.labels.is_empty()).then(|| {
        let pairs: Vec<String> = opts
            .labels
            .iter()
            .map(|(k, v)| format!("{}={}", quote_label(k), quote_label(v)))
            .collect();
        format!("LABEL {}", pairs.join(" "))
    });
    let extra = if label_step.is_some() { 1 } else { 0 };
    // Global ARGs count as steps, as in docker's classic output.
    let total: usize = (0..stages.len())
        .filter(|i| needed[*i])
        .map(|i| 1 + stages[i].instructions.len())
        .sum::<usize>()
        + extra
        + df.meta_args.len();
    for (k, a) in df.meta_args.iter().enumerate() {
        let text = match &a.default {
            Some(d) => format!("ARG {}={d}", a.name),
            None => format!("ARG {}", a.name),
        };
        say(&out, format!("Step {}/{total} : {text}\n", k + 1));
    }
    let mut first_step = vec![0usize; stages.len()];
    let mut n = 1 + df.meta_args.len();
    for i in 0..stages.len() {
        if needed[i] {
            first_step[i] = n;
            n += 1 + stages[i].instructions.len();
        }
    }

    // Levels: stages whose dependencies are all in earlier levels build concurrently.
    // The first stage of a level streams live; the others' output is held and follows.
    let results: Mutex<HashMap<usize, StageResult>> = Mutex::new(HashMap::new());
    let mut done = vec![false; stages.len()];
    loop {
        let level: Vec<usize> = (0..stages.len())
            .filter(|&i| needed[i] && !done[i] && deps[i].iter().all(|d| done[*d]))
            .collect();
        if level.is_empty() {
            break;
        }
        let bufs: Vec<Arc<Mutex<Vec<Msg>>>> = level
            .iter()
            .map(|_| Arc::new(Mutex::new(Vec::new())))
            .collect();
        let futs = level.iter().enumerate().map(|(k, &i)| {
            let stage_out: Out = if k == 0 {
                out.clone()
            } else {
                let b = bufs[k].clone();
                Arc::new(move |m| lock(&b).push(m))
            };
            let ctx = Ctx {
                backend,
                opts,
                lex: &lex,
                meta: &meta,
                used: &used,
                results: &results,
                stages,
                out: stage_out,
                total,
            };
            let label = if i == target {
                label_step.clone()
            } else {
                None
            };
            let first = first_step[i];
            async move {
                let r = ctx.build_stage(i, first, label).await;
                (i, r)
            }
        });
        let outcomes = futures::future::join_all(futs).await;
        for b in bufs.iter().skip(1) {
            for m in lock(b).drain(..) {
                out(m);
            }
        }
        for (i, r) in outcomes {
            let r = r?;
            lock(&results).insert(i, r);
            done[i] = true;
        }
    }

    let final_id = lock(&results)
        .get(&target)
        .map(|r| r.image.clone())
        .unwrap_or_default();
    if final_id.is_empty() {
        return Err(BuildError::invalid(
            "No image was generated. Is your Dockerfile empty?",
        ));
    }
    let unused: Vec<String> = {
        let used = lock(&used);
        let mut v: Vec<String> = opts
            .build_args
            .keys()
            .filter(|k| !used.contains(*k) && !PREDEFINED_ARGS.contains(&k.as_str()))
            .cloned()
            .collect();
        v.sort();
        v
    };
    if !unused.is_empty() {
        say(
            &out,
            format!(
                "[Warning] One or more build-args [{}] were not consumed\n",
                unused.join(" ")
            ),
        );
    }
    out(Msg::Aux(serde_json::json!({ "ID": final_id })));
    say(
        &out,
        format!("Successfully built {}\n", short_id(&final_id)),
    );
    for t in &opts.tags {
        let shown = backend.tag(&final_id, t).await?;
        say(&out, format!("Successfully tagged {shown}\n"));
    }
    Ok(final_id)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn lookup(vars: &[(String, Option<String>)], name: &str) -> Option<String> {
    vars.iter()
        .rev()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.clone())
}

/// docker quotes label words in the `--label` step only when they need it.
fn quote_label(s: &str) -> String {
    if s.is_empty()
        || s.chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\'' || c == '=')
    {
        serde_json::to_string(s).unwrap_or_default()
    } else {
        s.to_string()
    }
}

/// Earlier stages a stage reads: its FROM and its `COPY --from`s. A `--from` that
/// needs substitution may name any earlier stage, so it depends on all of them.
fn stage_deps(stages: &[Stage], i: usize, base: &str) -> Vec<usize> {
    let find = |r: &str| -> Option<usize> {
        let r = r.to_lowercase();
        if let Ok(n) = r.parse::<usize>() {
            return (n < i).then_some(n);
        }
        stages[..i]
            .iter()
            .position(|s| s.name.as_deref() == Some(r.as_str()))
    };
    let mut out = Vec::new();
    if let Some(d) = find(base) {
        out.push(d);
    }
    for inst in &stages[i].instructions {
        if let Command::Copy(a) | Command::Add(a) = &inst.command {
            if let Some(f) = &a.from {
                if f.contains('$') {
                    out.extend(0..i);
                } else if let Some(d) = find(f) {
                    out.push(d);
                }
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

struct Ctx<'a, B: Backend> {
    backend: &'a B,
    opts: &'a BuildOptions,
    lex: &'a Lexer,
    meta: &'a [(String, Option<String>)],
    used: &'a Mutex<HashSet<String>>,
    results: &'a Mutex<HashMap<usize, StageResult>>,
    stages: &'a [Stage],
    out: Out,
    total: usize,
}

impl<B: Backend> Ctx<'_, B> {
    fn step(&self, n: usize, text: &str) {
        say(&self.out, format!("Step {n}/{} : {text}\n", self.total));
    }

    fn arrow(&self, id: &str) {
        say(&self.out, format!(" ---> {}\n", short_id(id)));
    }

    fn stage_index(&self, r: &str, before: usize) -> Option<usize> {
        let r = r.to_lowercase();
        if let Ok(n) = r.parse::<usize>() {
            return (n < before).then_some(n);
        }
        self.stages[..before]
            .iter()
            .position(|s| s.name.as_deref() == Some(r.as_str()))
    }

    async fn build_stage(
        &self,
        i: usize,
        mut n: usize,
        label_step: Option<String>,
    ) -> Result<StageResult, BuildError> {
        let stage = &self.stages[i];
        self.step(n, &stage.original);
        n += 1;
        let meta = self.meta.to_vec();
        let (base, platform) = dockerfile::expand_from(stage, self.lex, &|k| {
            let v = lookup(&meta, k);
            if v.is_some() {
                lock(self.used).insert(k.to_string());
            }
            v
        })?;
        let platform = platform.or_else(|| self.opts.platform.clone());
        let mut base_img = if let Some(d) = self.stage_index(&base, i) {
            let r = lock(self.results);
            let r = r
                .get(&d)
                .ok_or_else(|| BuildError::invalid(format!("stage {base} was not built")))?;
            BaseImage {
                id: r.image.clone(),
                config: r.config.clone(),
            }
        } else if base.eq_ignore_ascii_case("scratch") {
            BaseImage {
                id: String::new(),
                config: models::ImageConfig::default(),
            }
        } else {
            self.backend
                .base_image(&base, self.opts.pull, platform.as_deref(), self.out.clone())
                .await?
        };
        if base_img.id.is_empty() {
            say(&self.out, " ---> \n");
        } else {
            self.arrow(&base_img.id);
        }
        let triggers = base_img.config.on_build.take().unwrap_or_default();
        // docker's dispatchState.setDefaultPath: a stage without PATH gets the default one.
        let env = base_img.config.env.get_or_insert_with(Vec::new);
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.push(DEFAULT_PATH.to_string());
        }
        let mut st = StageState {
            image: base_img.id,
            config: base_img.config,
            args: Vec::new(),
            cmd_set: false,
            author: None,
        };
        if !triggers.is_empty() {
            say(
                &self.out,
                format!(
                    "# Executing {} build trigger{}\n",
                    triggers.len(),
                    if triggers.len() == 1 { "" } else { "s" }
                ),
            );
            for t in &triggers {
                let parsed = dockerfile::parse("ONBUILD", &format!("FROM scratch\n{t}\n"))?;
                for inst in parsed.stages.iter().flat_map(|s| s.instructions.iter()) {
                    self.dispatch(&mut st, i, inst).await?;
                }
            }
        }
        for inst in &stage.instructions {
            self.step(n, &inst.original);
            n += 1;
            self.dispatch(&mut st, i, inst)
                .await
                .map_err(|e| self.locate(inst, e))?;
        }
        if let Some(l) = label_step {
            self.step(n, &l);
            let labels = st.config.labels.get_or_insert_with(HashMap::new);
            for (k, v) in &self.opts.labels {
                labels.insert(k.clone(), v.clone());
            }
            self.commit_nop(&mut st, &l).await?;
        }
        if st.image.is_empty() {
            // FROM scratch with nothing after it still yields an (empty) image.
            self.commit_nop(&mut st, "").await?;
        }
        Ok(StageResult {
            image: st.image,
            config: st.config,
        })
    }

    fn cache_key(&self, st: &StageState, created_by: &str, extra: &str) -> String {
        let mut h = Sha256::new();
        // Through Value: its maps are sorted, the config's HashMaps are not.
        let cfg = serde_json::to_value(&st.config)
            .and_then(|v| serde_json::to_vec(&v))
            .unwrap_or_default();
        for part in [
            st.image.as_bytes(),
            &cfg,
            created_by.as_bytes(),
            extra.as_bytes(),
            st.author.as_deref().unwrap_or("").as_bytes(),
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        format!("{:x}", h.finalize())
    }

    async fn cached(&self, key: &str) -> Option<String> {
        if self.opts.no_cache {
            return None;
        }
        let id = self.backend.cache_get(key).await?;
        say(&self.out, " ---> Using cache\n");
        self.arrow(&id);
        Some(id)
    }

    async fn commit_nop(&self, st: &mut StageState, comment: &str) -> Result<(), BuildError> {
        let created_by = if comment.is_empty() {
            String::new()
        } else {
            format!("{} #(nop)  {comment}", st.shell().join(" "))
        };
        let key = self.cache_key(st, &created_by, "nop");
        if let Some(id) = self.cached(&key).await {
            st.image = id;
            return Ok(());
        }
        let id = self
            .backend
            .commit_config(&st.image, &st.config, &created_by, st.author.as_deref())
            .await?;
        self.backend.cache_put(&key, &id).await;
        self.arrow(&id);
        st.image = id;
        Ok(())
    }

    fn argv(&self, st: &StageState, c: &ShellOrExec) -> Vec<String> {
        match c {
            ShellOrExec::Exec(v) => v.clone(),
            ShellOrExec::Shell(s) => {
                let mut v = st.shell();
                v.push(s.clone());
                v
            }
        }
    }

    async fn dispatch(
        &self,
        st: &mut StageState,
        stage: usize,
        inst: &Instruction,
    ) -> Result<(), BuildError> {
        let cmd = {
            let env = |k: &str| {
                let v = st.env_get(k);
                if v.is_some() && !st.env_has(k) {
                    lock(self.used).insert(k.to_string());
                }
                v
            };
            inst.command
                .expand(self.lex, &env)
                .map_err(|e| BuildError::invalid(format!("{}: {e}", inst.command.name())))?
        };
        match cmd {
            Command::Env(pairs) => {
                let mut msg = String::from("ENV");
                for (k, v) in &pairs {
                    st.set_env(k, v);
                    msg.push_str(&format!(" {k}={v}"));
                }
                self.commit_nop(st, &msg).await
            }
            Command::Label(pairs) => {
                let mut msg = String::from("LABEL");
                let labels = st.config.labels.get_or_insert_with(HashMap::new);
                for (k, v) in &pairs {
                    labels.insert(k.clone(), v.clone());
                    msg.push_str(&format!(" {k}={v}"));
                }
                self.commit_nop(st, &msg).await
            }
            Command::Expose(ports) => {
                let mut specs = Vec::new();
                for p in &ports {
                    specs.extend(expand_port(p)?);
                }
                let ex = st.config.exposed_ports.get_or_insert_with(Vec::new);
                for s in specs {
                    if !ex.contains(&s) {
                        ex.push(s);
                    }
                }
                ex.sort();
                self.commit_nop(st, &format!("EXPOSE {}", ports.join(" ")))
                    .await
            }
            Command::Volume(vols) => {
                if vols.iter().any(|v| v.trim().is_empty()) {
                    return Err(BuildError::invalid(
                        "VOLUME specified can not be an empty string",
                    ));
                }
                let vs = st.config.volumes.get_or_insert_with(Vec::new);
                for v in &vols {
                    if !vs.contains(v) {
                        vs.push(v.clone());
                    }
                }
                self.commit_nop(st, &format!("VOLUME {}", go_v(&vols)))
                    .await
            }
            Command::User(u) => {
                st.config.user = Some(u.clone());
                self.commit_nop(st, &format!("USER {u}")).await
            }
            Command::Stopsignal(s) => {
                validate_signal(&s)?;
                st.config.stop_signal = Some(s.clone());
                self.commit_nop(st, &format!("STOPSIGNAL {s}")).await
            }
            Command::Maintainer(m) => {
                st.author = Some(m.clone());
                self.commit_nop(st, &format!("MAINTAINER {m}")).await
            }
            Command::Shell(v) => {
                st.config.shell = Some(v.clone());
                self.commit_nop(st, &format!("SHELL {}", go_v(&v))).await
            }
            Command::Onbuild(t) => {
                st.config
                    .on_build
                    .get_or_insert_with(Vec::new)
                    .push(t.clone());
                self.commit_nop(st, &format!("ONBUILD {t}")).await
            }
            Command::Cmd(c) => {
                let argv = self.argv(st, &c);
                st.config.cmd = Some(argv.clone());
                st.cmd_set = true;
                self.commit_nop(st, &format!("CMD {}", go_q(&argv))).await
            }
            Command::Entrypoint(c) => {
                let argv = self.argv(st, &c);
                st.config.entrypoint = Some(argv.clone());
                // docker: an ENTRYPOINT drops the base image's CMD unless this stage set one.
                if !st.cmd_set {
                    st.config.cmd = None;
                }
                self.commit_nop(st, &format!("ENTRYPOINT {}", go_q(&argv)))
                    .await
            }
            Command::Healthcheck(h) => {
                let hc = match &h {
                    None => models::HealthConfig {
                        test: Some(vec!["NONE".into()]),
                        ..Default::default()
                    },
                    Some(h) => models::HealthConfig {
                        test: Some(h.test.clone()),
                        interval: h.interval,
                        timeout: h.timeout,
                        start_period: h.start_period,
                        start_interval: h.start_interval,
                        retries: h.retries,
                    },
                };
                // Go's %v of docker's HealthConfig struct (Test, Interval, Timeout,
                // StartPeriod, Retries), as the classic builder writes it.
                let msg = format!(
                    "HEALTHCHECK &{{{} \"{}\" \"{}\" \"{}\" '\\x{:02x}'}}",
                    go_q(hc.test.as_deref().unwrap_or_default()),
                    go_duration(hc.interval),
                    go_duration(hc.timeout),
                    go_duration(hc.start_period),
                    hc.retries.unwrap_or(0)
                );
                st.config.healthcheck = Some(hc);
                self.commit_nop(st, &msg).await
            }
            Command::Arg(decls) => {
                let mut msg = String::from("ARG");
                for d in &decls {
                    let v = match self.opts.build_args.get(&d.name) {
                        Some(v) => {
                            lock(self.used).insert(d.name.clone());
                            v.clone()
                        }
                        None => match &d.default {
                            Some(dv) => Some(dv.clone()),
                            None => {
                                let m = lookup(self.meta, &d.name);
                                if m.is_some() {
                                    lock(self.used).insert(d.name.clone());
                                }
                                m
                            }
                        },
                    };
                    st.args.push((d.name.clone(), v));
                    msg.push(' ');
                    msg.push_str(&d.name);
                    if let Some(dv) = &d.default {
                        msg.push('=');
                        msg.push_str(dv);
                    }
                }
                self.commit_nop(st, &msg).await
            }
            Command::Workdir(w) => {
                let cur = st.config.working_dir.clone().unwrap_or_default();
                let dir = if w.starts_with('/') {
                    clean_abs(&w)
                } else {
                    clean_abs(&format!("{}/{w}", if cur.is_empty() { "/" } else { &cur }))
                };
                st.config.working_dir = Some(dir.clone());
                let created_by = format!("{} #(nop) WORKDIR {dir}", st.shell().join(" "));
                let key = self.cache_key(st, &created_by, "workdir");
                if let Some(id) = self.cached(&key).await {
                    st.image = id;
                    return Ok(());
                }
                let id = self
                    .backend
                    .workdir(&st.image, &dir, &st.config, &created_by)
                    .await?;
                self.backend.cache_put(&key, &id).await;
                self.arrow(&id);
                st.image = id;
                Ok(())
            }
            Command::Run {
                cmd,
                heredocs,
                network,
                mounts,
                security,
            } => {
                if !mounts.is_empty() {
                    return Err(BuildError::invalid(
                        "RUN --mount is not supported by this builder",
                    ));
                }
                if security.as_deref().is_some_and(|s| s != "sandbox") {
                    return Err(BuildError::invalid(
                        "RUN --security=insecure is not supported by this builder",
                    ));
                }
                let argv = match (&cmd, heredocs.as_slice()) {
                    (ShellOrExec::Shell(s), [h]) if is_lone_heredoc(s) => {
                        // buildkit: a RUN that is only a heredoc runs its body as the script.
                        let mut v = st.shell();
                        v.push(h.data());
                        v
                    }
                    (ShellOrExec::Shell(s), hs) if !hs.is_empty() => {
                        // The shell reads the heredocs itself: hand it the original text.
                        let mut script = s.clone();
                        for h in hs {
                            script.push('\n');
                            script.push_str(&h.content);
                            if !h.content.ends_with('\n') {
                                script.push('\n');
                            }
                            script.push_str(&h.name);
                        }
                        let mut v = st.shell();
                        v.push(script);
                        v
                    }
                    _ => self.argv(st, &cmd),
                };
                let args = st.run_args();
                let created_by = if args.is_empty() {
                    argv.join(" ")
                } else {
                    format!("|{} {} {}", args.len(), args.join(" "), argv.join(" "))
                };
                let key = self.cache_key(st, &created_by, "run");
                if let Some(id) = self.cached(&key).await {
                    st.image = id;
                    return Ok(());
                }
                let mut env = st.config.env.clone().unwrap_or_default();
                env.extend(args);
                let spec = RunSpec {
                    parent: st.image.clone(),
                    cmd: argv.clone(),
                    env,
                    config: st.config.clone(),
                    created_by,
                    network: network.or_else(|| self.opts.network_mode.clone()),
                    rm: self.opts.rm,
                    force_rm: self.opts.force_rm,
                    display: argv.join(" "),
                };
                let id = self.backend.run(spec, self.out.clone()).await?;
                self.backend.cache_put(&key, &id).await;
                self.arrow(&id);
                st.image = id;
                Ok(())
            }
            Command::Copy(a) => self.copy(st, stage, a, "COPY").await,
            Command::Add(a) => self.copy(st, stage, a, "ADD").await,
        }
    }

    /// Names the Dockerfile and line in a step's error (a failing RUN keeps docker's
    /// exact message, which scripts match on).
    fn locate(&self, inst: &Instruction, e: BuildError) -> BuildError {
        match e {
            BuildError::Api(a) => BuildError::Api(berth_api::Error::new(
                a.kind,
                format!("{}:{}: {}", self.opts_name(), inst.line, a.message),
            )),
            run => run,
        }
    }

    fn opts_name(&self) -> &str {
        if self.opts.dockerfile.is_empty() {
            "Dockerfile"
        } else {
            &self.opts.dockerfile
        }
    }

    async fn copy(
        &self,
        st: &mut StageState,
        stage: usize,
        a: CopyArgs,
        instruction: &'static str,
    ) -> Result<(), BuildError> {
        let source = match a.from.as_deref().filter(|f| !f.is_empty()) {
            None => CopySource::Context,
            Some(f) => match self.stage_index(f, stage) {
                Some(d) => {
                    let r = lock(self.results);
                    let r = r
                        .get(&d)
                        .ok_or_else(|| BuildError::invalid(format!("stage {f} was not built")))?;
                    CopySource::Image(r.image.clone())
                }
                None => {
                    if f.parse::<usize>().is_ok() {
                        return Err(BuildError::invalid(format!(
                            "invalid from flag value {f}: refers to current or future build stage"
                        )));
                    }
                    if self.stages[stage].name.as_deref() == Some(f.to_lowercase().as_str()) {
                        return Err(BuildError::invalid(format!(
                            "{instruction} --from={f} refers to the current build stage"
                        )));
                    }
                    let img = self
                        .backend
                        .base_image(f, false, None, self.out.clone())
                        .await?;
                    CopySource::Image(img.id)
                }
            },
        };
        if instruction == "COPY" && a.sources.iter().any(|s| is_url(s)) {
            return Err(BuildError::invalid("source can't be a URL for COPY"));
        }
        let nsrc = a.sources.len() + a.heredocs.len();
        if nsrc == 0 {
            return Err(BuildError::invalid(format!(
                "{instruction} requires at least two arguments"
            )));
        }
        let cwd = st
            .config
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into());
        let dest_is_dir = a.dest.ends_with('/')
            || a.dest == "."
            || a.dest.ends_with("/.")
            || a.dest == ".."
            || a.dest.ends_with("/..");
        if nsrc > 1 && !dest_is_dir {
            return Err(BuildError::invalid(format!(
                "When using {instruction} with more than one source file, the destination must be a directory and end with a /"
            )));
        }
        let dest = if a.dest.starts_with('/') {
            clean_abs(&a.dest)
        } else {
            clean_abs(&format!("{cwd}/{}", a.dest))
        };
        let chmod = match a.chmod.as_deref().filter(|c| !c.is_empty()) {
            None => None,
            Some(c) => Some(
                u32::from_str_radix(c, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| BuildError::invalid(format!("invalid chmod parameter: {c}")))?,
            ),
        };
        let spec = CopySpec {
            source,
            sources: a.sources.clone(),
            heredocs: a
                .heredocs
                .iter()
                .map(|h| (h.name.clone(), h.content.clone()))
                .collect(),
            dest: dest.clone(),
            dest_is_dir,
            chown: a.chown.clone().filter(|c| !c.is_empty()),
            chmod,
            exclude: a.exclude.clone(),
            add: instruction == "ADD",
            instruction,
        };
        let digest = self.backend.copy_digest(&st.image, &spec).await?;
        let shown_dest = if dest_is_dir && dest != "/" {
            format!("{dest}/")
        } else {
            dest.clone()
        };
        // docker's quirk kept: "--chown=1000:1000file:<hash>", no space before the hash.
        let chown = spec
            .chown
            .as_deref()
            .map(|c| format!("--chown={c}"))
            .unwrap_or_default();
        let created_by = format!(
            "{} #(nop) {instruction} {chown}{digest} in {shown_dest} ",
            st.shell().join(" ")
        );
        let extra = format!(
            "{:?}|{:?}|{:?}|{:?}",
            spec.source, spec.chown, spec.chmod, spec.exclude
        );
        let key = self.cache_key(st, &created_by, &extra);
        if let Some(id) = self.cached(&key).await {
            st.image = id;
            return Ok(());
        }
        let id = self
            .backend
            .copy(&st.image, &spec, &st.config, &created_by)
            .await?;
        self.backend.cache_put(&key, &id).await;
        self.arrow(&id);
        st.image = id;
        Ok(())
    }
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// `RUN <<EOF` with nothing else on the line.
fn is_lone_heredoc(s: &str) -> bool {
    let t = s.trim();
    t.starts_with("<<") && !t.contains(char::is_whitespace)
}

/// Go's time.Duration String() for the HEALTHCHECK history line.
fn go_duration(ns: Option<i64>) -> String {
    let ns = ns.unwrap_or(0);
    if ns == 0 {
        return "0s".into();
    }
    if ns % 1_000_000_000 == 0 {
        let s = ns / 1_000_000_000;
        let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
        let mut out = String::new();
        if h > 0 {
            out.push_str(&format!("{h}h"));
        }
        if h > 0 || m > 0 {
            out.push_str(&format!("{m}m"));
        }
        out.push_str(&format!("{s}s"));
        return out;
    }
    format!("{}ms", ns / 1_000_000)
}

/// EXPOSE words: `80`, `80/udp`, `8000-8002/tcp` -> "80/tcp", ... (docker's nat.ParsePortSpecs).
fn expand_port(p: &str) -> Result<Vec<String>, BuildError> {
    let bad = || BuildError::invalid(format!("invalid containerPort: {p}"));
    let (ports, proto) = match p.split_once('/') {
        Some((a, b)) => (a, b.to_lowercase()),
        None => (p, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(BuildError::invalid(format!("invalid proto: {proto}")));
    }
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (
            a.parse::<u16>().map_err(|_| bad())?,
            b.parse::<u16>().map_err(|_| bad())?,
        ),
        None => {
            let n = ports.parse::<u16>().map_err(|_| bad())?;
            (n, n)
        }
    };
    if hi < lo {
        return Err(bad());
    }
    Ok((lo..=hi).map(|n| format!("{n}/{proto}")).collect())
}

fn validate_signal(s: &str) -> Result<(), BuildError> {
    if s.parse::<u32>().is_ok_and(|n| n > 0 && n < 65) {
        return Ok(());
    }
    let name = s.trim_start_matches("SIG").to_uppercase();
    const NAMES: &[&str] = &[
        "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "IOT", "BUS", "FPE", "KILL", "USR1", "SEGV",
        "USR2", "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU",
        "URG", "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "POLL", "PWR", "SYS",
    ];
    if NAMES.contains(&name.as_str()) || name.starts_with("RTMIN") || name.starts_with("RTMAX") {
        Ok(())
    } else {
        Err(BuildError::invalid(format!("Invalid signal: {s}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(expand_port("80").unwrap(), vec!["80/tcp"]);
        assert_eq!(expand_port("53-54/UDP").unwrap(), vec!["53/udp", "54/udp"]);
        assert!(expand_port("x").is_err());
        assert!(expand_port("80/foo").is_err());
    }

    #[test]
    fn paths_and_formats() {
        assert_eq!(clean_abs("/a/./b/../c/"), "/a/c");
        assert_eq!(clean_abs("/../.."), "/");
        assert_eq!(go_q(&["sh".into(), "-c".into()]), r#"["sh" "-c"]"#);
        assert_eq!(go_duration(Some(90_000_000_000)), "1m30s");
        assert_eq!(go_duration(Some(500_000_000)), "500ms");
        assert!(is_lone_heredoc("<<EOF"));
        assert!(!is_lone_heredoc("cat <<EOF"));
        assert!(validate_signal("SIGTERM").is_ok());
        assert!(validate_signal("9").is_ok());
        assert!(validate_signal("FOO").is_err());
    }
}
