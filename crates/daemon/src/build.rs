//! The daemon's side of `docker build`: the [`Backend`] the builder drives. RUN steps are
//! ordinary containers of this daemon (same runtime, networks, limits), committed like
//! `docker commit`; COPY/ADD/WORKDIR write straight into an overlay of the parent image
//! through the same in-root file code `docker cp` uses, with no container at all; the
//! cache is a table of `state.db` (key -> image id).

use crate::state::State;
use berth_api::{models, Error};
use berth_build::builder::{
    short_id, Backend, BaseImage, BuildError, CopySource, CopySpec, Msg, Out, RunSpec,
};
use berth_build::context::{clean_rel, Context};
use berth_context::glob;
use berth_image::{CommitOptions, ContainerFs, ExtractOptions, ImageStore};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub const CACHE_TABLE: &str = "build_cache";

/// Where builds keep their context and scratch rootfs: `<root>/build/<id>/`.
pub fn build_root(root: &Path) -> PathBuf {
    root.join("build")
}

/// At daemon start: a build cut short by a crash leaves its scratch dir (and maybe a
/// mounted step rootfs) behind; unmount and remove them.
pub fn cleanup_stale(root: &Path) {
    let Ok(builds) = std::fs::read_dir(build_root(root)) else {
        return;
    };
    for b in builds.flatten() {
        if let Ok(steps) = std::fs::read_dir(b.path()) {
            for st in steps.flatten() {
                if st.file_name().to_string_lossy().starts_with("step-") {
                    let _ = ImageStore::unmount_rootfs(&st.path());
                }
            }
        }
        if let Err(e) = std::fs::remove_dir_all(b.path()) {
            tracing::warn!("removing stale build dir {}: {e}", b.path().display());
        }
    }
}

pub struct DaemonBackend {
    pub st: Arc<State>,
    /// The build context as sent (spool + index).
    pub context: Arc<Context>,
    /// Scratch space for this build (step rootfs mounts, spooled archives).
    pub scratch: PathBuf,
    /// Resource limits of the build's RUN containers (`/build`'s memory, cpushares, ...).
    pub host_config: models::HostConfig,
    pub credentials: Option<berth_distribution::Credentials>,
    seq: AtomicU64,
    /// ADD URLs fetched in this build (the digest and the copy read the same bytes).
    downloads: std::sync::Mutex<std::collections::HashMap<String, (String, Vec<u8>)>>,
}

impl DaemonBackend {
    pub fn new(
        st: Arc<State>,
        context: Arc<Context>,
        scratch: PathBuf,
        host_config: models::HostConfig,
        credentials: Option<berth_distribution::Credentials>,
    ) -> Self {
        DaemonBackend {
            st,
            context,
            scratch,
            host_config,
            credentials,
            seq: AtomicU64::new(0),
            downloads: Default::default(),
        }
    }

    fn step_dir(&self) -> PathBuf {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        self.scratch.join(format!("step-{n}"))
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, BuildError> {
    Ok(tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(e.to_string()))??)
}

/// A parent image's rootfs mounted for one step; unmounted and removed on drop.
struct StepRoot {
    dir: PathBuf,
    rootfs: PathBuf,
    mounted: bool,
}

impl StepRoot {
    /// `image` "" (scratch) gets a plain directory: the upper dir itself.
    fn mount(images: &ImageStore, image: &str, dir: PathBuf) -> Result<StepRoot, Error> {
        std::fs::create_dir_all(&dir)?;
        if image.is_empty() {
            let upper = dir.join("upper");
            std::fs::create_dir_all(&upper)?;
            return Ok(StepRoot {
                rootfs: upper,
                dir,
                mounted: false,
            });
        }
        let rootfs = images.mount_rootfs(image, &dir)?;
        Ok(StepRoot {
            dir,
            rootfs,
            mounted: true,
        })
    }

    fn unmount(&mut self) -> Result<(), Error> {
        if self.mounted {
            ImageStore::unmount_rootfs(&self.dir)?;
            self.mounted = false;
        }
        Ok(())
    }
}

impl Drop for StepRoot {
    fn drop(&mut self) {
        let _ = self.unmount();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn commit(
    images: &ImageStore,
    parent: &str,
    dir: &Path,
    config: &models::ImageConfig,
    created_by: &str,
    author: Option<&str>,
) -> Result<String, Error> {
    images.commit(
        parent,
        dir,
        &CommitOptions {
            config: config.clone(),
            changes: Vec::new(),
            author: author.map(String::from),
            comment: None,
            created_by: Some(created_by.to_string()),
            repo_tag: None,
            // The step dir goes right after: its upper may become the snapshot.
            consume_upper: true,
        },
    )
}

impl Backend for DaemonBackend {
    async fn base_image(
        &self,
        name: &str,
        pull: bool,
        _platform: Option<&str>,
        out: Out,
    ) -> Result<BaseImage, BuildError> {
        let images = self.st.images.clone();
        let n = name.to_string();
        let local = blocking(move || {
            Ok(match images.resolve(&n) {
                Ok(img) => Some((img.id.clone(), images.config(&img.id)?)),
                Err(e) if e.kind == berth_api::ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            })
        })
        .await?;
        if let (Some((id, config)), false) = (&local, pull) {
            return Ok(BaseImage {
                id: id.clone(),
                config: config.clone(),
            });
        }
        let reference = berth_distribution::pull_reference(name, "")?;
        let opts = self.st.registry_options();
        let puller = berth_distribution::Puller::new(
            self.st.images.clone(),
            opts,
            berth_distribution::spool_dir(&self.st.root),
        );
        let resolved = match puller.resolve(&reference, self.credentials.clone()).await {
            Ok(r) => r,
            // docker build --pull with the image present and the registry away still builds.
            Err(_) if local.is_some() => {
                let (id, config) = local.unwrap_or_default();
                return Ok(BaseImage { id, config });
            }
            Err(e) => return Err(e.into()),
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<berth_distribution::Progress>(64);
        let fwd = tokio::spawn(async move {
            while let Some(p) = rx.recv().await {
                if let Ok(v) = serde_json::to_value(p) {
                    out(Msg::Raw(v));
                }
            }
        });
        puller.fetch(resolved, tx).await?;
        let _ = fwd.await;
        let images = self.st.images.clone();
        let n = reference.familiar_string();
        let (id, config) = blocking(move || {
            let img = images.resolve(&n)?;
            Ok((img.id.clone(), images.config(&img.id)?))
        })
        .await?;
        Ok(BaseImage { id, config })
    }

    async fn run(&self, spec: RunSpec, out: Out) -> Result<String, BuildError> {
        let st = &self.st;
        let mut hc = self.host_config.clone();
        hc.network_mode = spec.network.clone().filter(|n| n != "default");
        let body = models::ContainerCreateBody {
            image: Some(spec.parent.clone()),
            cmd: Some(spec.cmd.clone()),
            entrypoint: Some(vec![]),
            env: Some(spec.env.clone()),
            user: spec.config.user.clone(),
            working_dir: spec.config.working_dir.clone(),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            host_config: Some(hc),
            ..Default::default()
        };
        let id = st.create_container(None, body).await?;
        let c = st.lookup(&id)?;
        say(&out, format!(" ---> Running in {}\n", short_id(&id)));
        let result = self.run_container(&c, &spec, &out).await;
        let remove = match &result {
            Ok(_) => spec.rm || spec.force_rm,
            Err(_) => spec.force_rm,
        };
        if remove {
            if result.is_ok() {
                say(
                    &out,
                    format!("Removing intermediate container {}\n", short_id(&id)),
                );
            }
            st.remove_container_v(&c, true, true).await?;
        }
        result
    }

    async fn copy_digest(&self, _parent: &str, spec: &CopySpec) -> Result<String, BuildError> {
        let plan = self.plan(spec).await?;
        let exclude = exclude_matcher(spec)?;
        blocking(move || {
            let mut h = Sha256::new();
            let mut kinds = Vec::new();
            for item in &plan.items {
                kinds.push(item.kind());
                item.visit(&plan.spool, &mut |e| {
                    if !excluded(&exclude, e) {
                        e.hash(&mut h);
                    }
                    Ok(())
                })?;
            }
            let kind = match kinds.as_slice() {
                ["dir"] => "dir",
                ["file"] => "file",
                _ => "multi",
            };
            Ok(format!("{kind}:{:x}", h.finalize()))
        })
        .await
    }

    async fn copy(
        &self,
        parent: &str,
        spec: &CopySpec,
        config: &models::ImageConfig,
        created_by: &str,
    ) -> Result<String, BuildError> {
        let plan = self.plan(spec).await?;
        let exclude = exclude_matcher(spec)?;
        let images = self.st.images.clone();
        let (parent, spec, config, created_by) = (
            parent.to_string(),
            spec.clone(),
            config.clone(),
            created_by.to_string(),
        );
        let dir = self.step_dir();
        blocking(move || {
            let mut root = StepRoot::mount(&images, &parent, dir)?;
            let fs = ContainerFs::open(&root.rootfs, &[], false)?;
            let owner = match &spec.chown {
                Some(u) => {
                    let (uid, gid, _) = berth_runtime::user::resolve_user(&root.rootfs, u, &[])
                        .map_err(|e| {
                            Error::invalid(format!(
                                "unable to convert uid/gid chown string to host mapping: {e}"
                            ))
                        })?;
                    Some((uid, gid))
                }
                None => None,
            };
            // The archive to extract at "/": missing parents of the destination first.
            let spool_path = root.dir.join("copy.tar");
            let mut spool = File::options()
                .create(true)
                .truncate(true)
                .read(true)
                .write(true)
                .open(&spool_path)?;
            {
                let mut tb = tar::Builder::new(&mut spool);
                let dest_rel = spec.dest.trim_start_matches('/').to_string();
                let dest_exists_dir = fs.stat(&spec.dest).map(|s| s.is_dir()).unwrap_or(false);
                let into_dir = spec.dest_is_dir || dest_exists_dir;
                let mut parents: Vec<String> = Vec::new();
                let mut acc = String::new();
                let comps: Vec<&str> = dest_rel.split('/').filter(|c| !c.is_empty()).collect();
                let upto = if into_dir || plan.items.iter().any(|i| i.kind() == "dir") {
                    comps.len()
                } else {
                    comps.len().saturating_sub(1)
                };
                for c in &comps[..upto] {
                    if !acc.is_empty() {
                        acc.push('/');
                    }
                    acc.push_str(c);
                    if fs.stat(&format!("/{acc}")).is_err() {
                        parents.push(acc.clone());
                    }
                }
                for p in &parents {
                    let mut h = tar::Header::new_gnu();
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    let (u, g) = owner.unwrap_or((0, 0));
                    h.set_uid(u.into());
                    h.set_gid(g.into());
                    h.set_size(0);
                    h.set_mtime(now_secs());
                    tb.append_data(&mut h, format!("{p}/"), std::io::empty())
                        .map_err(io_err)?;
                }
                for item in &plan.items {
                    item.visit(&plan.spool, &mut |e| {
                        if excluded(&exclude, e) {
                            return Ok(());
                        }
                        let name = match e.rel.as_str() {
                            "" | "." => {
                                if item.kind() == "dir" || item.kind() == "archive" {
                                    dest_rel.clone()
                                } else if into_dir {
                                    join_rel(&dest_rel, &e.base)
                                } else {
                                    dest_rel.clone()
                                }
                            }
                            r => {
                                if item.kind() == "file" {
                                    if into_dir {
                                        join_rel(&dest_rel, r)
                                    } else {
                                        dest_rel.clone()
                                    }
                                } else {
                                    join_rel(&dest_rel, r)
                                }
                            }
                        };
                        if name.is_empty() {
                            // The root itself: its metadata is never replaced.
                            return Ok(());
                        }
                        e.append(&mut tb, &name, &dest_rel, owner, spec.chmod)
                    })?;
                }
                tb.finish().map_err(io_err)?;
            }
            spool.seek(SeekFrom::Start(0))?;
            fs.extract("/", &mut spool, &ExtractOptions::default())
                .map_err(|e| {
                    Error::invalid(format!("{} failed: {}", spec.instruction, e.message))
                })?;
            drop(spool);
            let _ = std::fs::remove_file(&spool_path);
            root.unmount()?;
            commit(&images, &parent, &root.dir, &config, &created_by, None)
        })
        .await
    }

    async fn workdir(
        &self,
        parent: &str,
        dir: &str,
        config: &models::ImageConfig,
        created_by: &str,
    ) -> Result<String, BuildError> {
        let images = self.st.images.clone();
        let (parent, wd, config, created_by) = (
            parent.to_string(),
            dir.to_string(),
            config.clone(),
            created_by.to_string(),
        );
        let sdir = self.step_dir();
        blocking(move || {
            let mut root = StepRoot::mount(&images, &parent, sdir)?;
            let fs = ContainerFs::open(&root.rootfs, &[], false)?;
            let mut missing = Vec::new();
            let mut acc = String::new();
            for c in wd.split('/').filter(|c| !c.is_empty()) {
                acc.push('/');
                acc.push_str(c);
                if fs.stat(&acc).is_err() {
                    missing.push(acc.trim_start_matches('/').to_string());
                }
            }
            if !missing.is_empty() {
                let mut buf = Vec::new();
                {
                    let mut tb = tar::Builder::new(&mut buf);
                    for m in &missing {
                        let mut h = tar::Header::new_gnu();
                        h.set_entry_type(tar::EntryType::Directory);
                        h.set_mode(0o755);
                        h.set_uid(0);
                        h.set_gid(0);
                        h.set_size(0);
                        h.set_mtime(now_secs());
                        tb.append_data(&mut h, format!("{m}/"), std::io::empty())
                            .map_err(io_err)?;
                    }
                    tb.finish().map_err(io_err)?;
                }
                fs.extract("/", &mut buf.as_slice(), &ExtractOptions::default())?;
            }
            root.unmount()?;
            commit(&images, &parent, &root.dir, &config, &created_by, None)
        })
        .await
    }

    async fn commit_config(
        &self,
        parent: &str,
        config: &models::ImageConfig,
        created_by: &str,
        author: Option<&str>,
    ) -> Result<String, BuildError> {
        let images = self.st.images.clone();
        let (parent, config, created_by, author) = (
            parent.to_string(),
            config.clone(),
            created_by.to_string(),
            author.map(String::from),
        );
        let dir = self.step_dir();
        blocking(move || {
            std::fs::create_dir_all(dir.join("upper"))?;
            let r = commit(
                &images,
                &parent,
                &dir,
                &config,
                &created_by,
                author.as_deref(),
            );
            let _ = std::fs::remove_dir_all(&dir);
            r
        })
        .await
    }

    async fn cache_get(&self, key: &str) -> Option<String> {
        let db = self.st.db.clone();
        let images = self.st.images.clone();
        let key = key.to_string();
        tokio::task::spawn_blocking(move || {
            let id: String = db.get(CACHE_TABLE, &key).ok()??;
            images.resolve(&id).ok().map(|i| i.id)
        })
        .await
        .ok()
        .flatten()
    }

    async fn cache_put(&self, key: &str, image_id: &str) {
        let db = self.st.db.clone();
        let (key, id) = (key.to_string(), image_id.to_string());
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = db.put(CACHE_TABLE, &key, &id) {
                tracing::warn!("build cache: {e}");
            }
        })
        .await;
    }

    async fn tag(&self, image_id: &str, tag: &str) -> Result<String, BuildError> {
        let mut r = berth_image::parse_normalized_named(tag)?;
        if r.tag.is_none() && r.digest.is_none() {
            r = r.with_tag("latest");
        }
        let shown = r.familiar_string();
        let images = self.st.images.clone();
        let (id, t) = (image_id.to_string(), shown.clone());
        blocking(move || images.tag(&id, &t, None)).await?;
        self.st.events.publish(
            "image",
            "tag",
            image_id,
            std::collections::HashMap::from([("name".to_string(), shown.clone())]),
        );
        Ok(shown)
    }
}

fn say(out: &Out, s: String) {
    out(Msg::Stream(s))
}

fn io_err(e: std::io::Error) -> Error {
    Error::internal(format!("writing layer archive: {e}"))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn join_rel(a: &str, b: &str) -> String {
    let b = b.trim_start_matches("./").trim_start_matches('/');
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

impl DaemonBackend {
    async fn run_container(
        &self,
        c: &Arc<crate::containers::Ctr>,
        spec: &RunSpec,
        out: &Out,
    ) -> Result<String, BuildError> {
        use tokio::io::AsyncReadExt;
        let st = &self.st;
        let seen = c.events.borrow().exits;
        let rx = st
            .attach_stream(
                c,
                berth_runtime::client::AttachOptions {
                    stdin: false,
                    stdout: true,
                    stderr: true,
                    detach_keys: Some(Vec::new()),
                },
            )
            .await?;
        st.start_container(c).await?;
        if let Ok(mut s) = rx.await {
            // docker's multiplexed stream: 8-byte header (stream, 0, 0, 0, size BE32).
            let mut hdr = [0u8; 8];
            loop {
                if s.read_exact(&mut hdr).await.is_err() {
                    break;
                }
                let n = u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]) as usize;
                let mut buf = vec![0u8; n];
                if s.read_exact(&mut buf).await.is_err() {
                    break;
                }
                out(Msg::Stream(String::from_utf8_lossy(&buf).into_owned()));
            }
        }
        State::wait_exit_after(c, seen, None).await;
        let code = c.rec().state.exit_code;
        if code != 0 {
            return Err(BuildError::Run {
                message: format!(
                    "The command '{}' returned a non-zero code: {code}",
                    spec.display
                ),
                code,
            });
        }
        let opts = CommitOptions {
            config: spec.config.clone(),
            changes: Vec::new(),
            author: None,
            comment: None,
            created_by: Some(spec.created_by.clone()),
            repo_tag: None,
            // The container is removed next (rm/force-rm): its upper may become the snapshot.
            consume_upper: spec.rm || spec.force_rm,
        };
        Ok(st.commit_container(c, false, opts).await?)
    }

    /// Resolves a COPY/ADD's sources to concrete items (wildcards expanded, URLs fetched).
    async fn plan(&self, spec: &CopySpec) -> Result<Plan, BuildError> {
        std::fs::create_dir_all(&self.scratch).map_err(Error::from)?;
        let mut plan = Plan {
            items: Vec::new(),
            spool: self.scratch.clone(),
        };
        let mut locals = Vec::new();
        for s in &spec.sources {
            if spec.add && (s.starts_with("http://") || s.starts_with("https://")) {
                plan.items.push(self.fetch_url(s).await?);
            } else {
                locals.push(s.clone());
            }
        }
        for (name, content) in &spec.heredocs {
            plan.items.push(Item::Heredoc {
                name: name.clone(),
                content: content.clone(),
            });
        }
        if locals.is_empty() {
            return Ok(plan);
        }
        let spec2 = spec.clone();
        let items = match &spec.source {
            CopySource::Context => {
                let ctx = self.context.clone();
                blocking(move || context_items(&ctx, &spec2, &locals)).await?
            }
            CopySource::Image(id) => {
                let images = self.st.images.clone();
                let (id, dir) = (id.clone(), self.step_dir());
                let r = blocking(move || StepRoot::mount(&images, &id, dir)).await?;
                let (root, mount) = (r.rootfs.clone(), Arc::new(r));
                blocking(move || image_items(&root, &mount, &spec2, &locals)).await?
            }
        };
        if plan.items.len() + items.len() > 1 && !spec.dest_is_dir {
            return Err(Error::invalid(format!(
                "When using {} with more than one source file, the destination must be a directory and end with a /",
                spec.instruction
            ))
            .into());
        }
        plan.items.extend(items);
        Ok(plan)
    }

    async fn fetch_url(&self, url: &str) -> Result<Item, BuildError> {
        let done = self
            .downloads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(url)
            .cloned();
        if let Some((name, content)) = done {
            return Ok(Item::Url { name, content });
        }
        let resp = reqwest::get(url)
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| Error::invalid(format!("failed to GET {url}: {e}")))?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| Error::invalid(format!("failed to GET {url}: {e}")))?;
        let name = url
            .split(['?', '#'])
            .next()
            .unwrap_or(url)
            .rsplit('/')
            .find(|s| !s.is_empty())
            .unwrap_or("download")
            .to_string();
        self.downloads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(url.to_string(), (name.clone(), bytes.to_vec()));
        Ok(Item::Url {
            name,
            content: bytes.to_vec(),
        })
    }
}

/// A single root-owned file made by the build (a download, a heredoc).
fn one_file(
    name: &str,
    content: &[u8],
    mode: u32,
    f: &mut dyn FnMut(&mut Entry) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(content.len() as u64);
    h.set_mtime(now_secs());
    let mut data = content;
    f(&mut Entry {
        rel: String::new(),
        base: name.to_string(),
        header: h,
        link: None,
        data: &mut data,
        keep_owner: false,
    })
}

/// `COPY --exclude=PATTERN`: .dockerignore-style patterns matched against each entry's
/// path below its source (a file source by its name).
fn exclude_matcher(spec: &CopySpec) -> Result<Option<berth_context::ignore::Matcher>, Error> {
    if spec.exclude.is_empty() {
        return Ok(None);
    }
    berth_context::ignore::Matcher::new(&spec.exclude)
        .map(Some)
        .map_err(|e| Error::invalid(format!("{} --exclude: {e}", spec.instruction)))
}

fn excluded(m: &Option<berth_context::ignore::Matcher>, e: &Entry) -> bool {
    let Some(m) = m else {
        return false;
    };
    let path = if e.rel.is_empty() { &e.base } else { &e.rel };
    !path.is_empty() && m.is_excluded(path)
}

fn forbidden(s: &str) -> Error {
    Error::invalid(format!("forbidden path outside the build context: {s} ()"))
}

/// COPY/ADD sources from the build context (its index; nothing on disk).
fn context_items(
    ctx: &Arc<Context>,
    spec: &CopySpec,
    sources: &[String],
) -> Result<Vec<Item>, Error> {
    let mut items = Vec::new();
    for s in sources {
        let list = |base: &str| {
            let dir = ctx.resolve(base, true)?;
            ctx.get(&dir)
                .filter(|n| n.is_dir())
                .map(|_| ctx.children(&dir))
        };
        let matches = source_paths(s, spec, &list)?;
        for m in matches {
            // The source path itself is followed when it is a symlink (in the context).
            let key = ctx.resolve(&m, true).ok_or_else(|| not_found(spec, s))?;
            let node = ctx.get(&key).ok_or_else(|| not_found(spec, s))?;
            let base = m.rsplit('/').next().unwrap_or(&m).to_string();
            if node.is_dir() {
                items.push(Item::CtxDir {
                    ctx: ctx.clone(),
                    key,
                });
            } else if spec.add && is_archive(&mut ctx.reader(node)) {
                items.push(Item::CtxArchive {
                    ctx: ctx.clone(),
                    key,
                });
            } else {
                items.push(Item::CtxFile {
                    ctx: ctx.clone(),
                    key,
                    base,
                });
            }
        }
    }
    Ok(items)
}

/// COPY --from sources: another stage's (or image's) rootfs, resolved in-root.
fn image_items(
    root: &Path,
    mount: &Arc<StepRoot>,
    spec: &CopySpec,
    sources: &[String],
) -> Result<Vec<Item>, Error> {
    let fs = ContainerFs::open(root, &[], true)?;
    let mut items = Vec::new();
    for s in sources {
        // Names only are listed on the host side (no symlink followed at the end); the
        // paths found are then resolved in-root by ContainerFs.
        let list = |base: &str| {
            let dir = root.join(base);
            if !std::fs::symlink_metadata(&dir).ok()?.is_dir() {
                return None;
            }
            let mut names: Vec<String> = std::fs::read_dir(&dir)
                .ok()?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            Some(names)
        };
        let matches = source_paths(s, spec, &list)?;
        for m in matches {
            let stat = fs.stat(&format!("/{m}")).map_err(|_| not_found(spec, s))?;
            let (path, stat) = if !stat.link_target.is_empty() {
                let t = stat.link_target.clone();
                let ts = fs.stat(&t).map_err(|_| not_found(spec, s))?;
                (t, ts)
            } else {
                (format!("/{m}"), stat)
            };
            let base = m.rsplit('/').next().unwrap_or(&m).to_string();
            if stat.is_dir() {
                items.push(Item::Dir {
                    root: root.to_path_buf(),
                    path,
                    _keep: Some(mount.clone()),
                    owner_from_source: true,
                });
            } else {
                items.push(Item::File {
                    root: root.to_path_buf(),
                    path,
                    base,
                    _keep: Some(mount.clone()),
                    owner_from_source: true,
                });
            }
        }
    }
    Ok(items)
}

fn not_found(spec: &CopySpec, s: &str) -> Error {
    match spec.source {
        CopySource::Context => Error::invalid(format!(
            "{} failed: file not found in build context or excluded by .dockerignore: stat {s}: file does not exist",
            spec.instruction
        )),
        CopySource::Image(_) => Error::invalid(format!(
            "{} failed: stat {s}: file does not exist",
            spec.instruction
        )),
    }
}

/// Go filepath.Match of a relative pattern, one component at a time; `list` gives the
/// sorted names in a directory (None when it is not one), so the context index and an
/// image rootfs expand patterns the same way.
fn expand_glob(
    pat: &str,
    list: &dyn Fn(&str) -> Option<Vec<String>>,
) -> Result<Vec<String>, Error> {
    let mut cur: Vec<String> = vec![String::new()];
    for comp in pat.split('/') {
        let mut next = Vec::new();
        for base in &cur {
            if !glob::has_meta(comp) {
                next.push(join_rel(base, comp));
                continue;
            }
            for n in list(base).unwrap_or_default() {
                if glob::go_match(comp, &n)
                    .map_err(|_| Error::invalid(format!("syntax error in pattern: {pat}")))?
                {
                    next.push(join_rel(base, &n));
                }
            }
        }
        cur = next;
    }
    Ok(cur)
}

/// A COPY/ADD source as written: cleaned (never above the root) and, when it holds
/// wildcards, expanded (matching nothing is "not found").
fn source_paths(
    s: &str,
    spec: &CopySpec,
    list: &dyn Fn(&str) -> Option<Vec<String>>,
) -> Result<Vec<String>, Error> {
    let rel = clean_rel(s).ok_or_else(|| forbidden(s))?;
    if !glob::has_meta(&rel) {
        return Ok(vec![rel]);
    }
    let m = expand_glob(&rel, list)?;
    if m.is_empty() {
        return Err(not_found(spec, s));
    }
    Ok(m)
}

/// ADD's rule: a local tar (plain or compressed) is unpacked, anything else copied.
fn is_archive(f: &mut dyn Read) -> bool {
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return false,
        }
    }
    if n == 0 {
        return false;
    }
    if berth_image::compress_detect(&head[..n]) != berth_image::Compression::None {
        return true;
    }
    n >= 262 && &head[257..262] == b"ustar"
}

struct Plan {
    items: Vec<Item>,
    /// Where sources are spooled while they are read (the build's scratch dir).
    spool: PathBuf,
}

enum Item {
    /// A directory's contents (and its own metadata as the destination's).
    Dir {
        root: PathBuf,
        path: String,
        /// Keeps a `--from` image's rootfs mounted while the item is read.
        _keep: Option<Arc<StepRoot>>,
        owner_from_source: bool,
    },
    File {
        root: PathBuf,
        path: String,
        base: String,
        /// Keeps a `--from` image's rootfs mounted while the item is read.
        _keep: Option<Arc<StepRoot>>,
        owner_from_source: bool,
    },
    /// A directory of the build context (its contents; its own metadata for the dest).
    CtxDir {
        ctx: Arc<Context>,
        key: String,
    },
    CtxFile {
        ctx: Arc<Context>,
        key: String,
        base: String,
    },
    /// ADD of a context tar (possibly compressed): its entries land under the destination.
    CtxArchive {
        ctx: Arc<Context>,
        key: String,
    },
    Url {
        name: String,
        content: Vec<u8>,
    },
    Heredoc {
        name: String,
        content: String,
    },
}

/// One entry on its way from a source to the layer.
struct Entry<'a> {
    /// Path relative to the item ("" for the item itself).
    rel: String,
    /// The item's base name (file items).
    base: String,
    header: tar::Header,
    link: Option<String>,
    data: &'a mut dyn Read,
    keep_owner: bool,
}

impl Entry<'_> {
    /// Feeds the cache digest: names, type, mode, owner, link target, bytes; not mtime.
    fn hash(&mut self, h: &mut Sha256) {
        let hd = &self.header;
        let meta = format!(
            "{}\0{}\0{:o}\0{}\0{}\0{}\0{}\0{}\0",
            self.rel,
            self.base,
            hd.mode().unwrap_or(0),
            if self.keep_owner {
                hd.uid().unwrap_or(0)
            } else {
                0
            },
            if self.keep_owner {
                hd.gid().unwrap_or(0)
            } else {
                0
            },
            hd.entry_type().as_byte(),
            self.link.as_deref().unwrap_or(""),
            hd.size().unwrap_or(0),
        );
        h.update(meta.as_bytes());
        let mut buf = [0u8; 64 * 1024];
        while let Ok(n) = self.data.read(&mut buf) {
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }

    fn append<W: Write>(
        &mut self,
        tb: &mut tar::Builder<W>,
        name: &str,
        dest_rel: &str,
        owner: Option<(u32, u32)>,
        chmod: Option<u32>,
    ) -> Result<(), Error> {
        let mut h = self.header.clone();
        // Go's archive/tar reads all-NUL numeric fields as 0; the tar crate does not.
        h.set_uid(self.header.uid().unwrap_or(0));
        h.set_gid(self.header.gid().unwrap_or(0));
        h.set_mode(self.header.mode().unwrap_or(0o644));
        h.set_mtime(self.header.mtime().unwrap_or(0));
        match owner {
            Some((u, g)) => {
                h.set_uid(u.into());
                h.set_gid(g.into());
            }
            None if !self.keep_owner => {
                h.set_uid(0);
                h.set_gid(0);
            }
            None => {}
        }
        if let Some(m) = chmod {
            if h.entry_type() != tar::EntryType::Symlink {
                h.set_mode(m);
            }
        }
        let et = h.entry_type();
        if et == tar::EntryType::Link {
            // Hard links point at names inside the same item: rebase them too.
            let target = join_rel(dest_rel, self.link.as_deref().unwrap_or(""));
            tb.append_link(&mut h, name, target).map_err(io_err)?;
        } else if et == tar::EntryType::Symlink {
            tb.append_link(&mut h, name, self.link.as_deref().unwrap_or(""))
                .map_err(io_err)?;
        } else if et == tar::EntryType::Directory {
            h.set_size(0);
            tb.append_data(&mut h, format!("{name}/"), std::io::empty())
                .map_err(io_err)?;
        } else {
            tb.append_data(&mut h, name, &mut self.data)
                .map_err(io_err)?;
        }
        Ok(())
    }
}

impl Item {
    fn kind(&self) -> &'static str {
        match self {
            Item::Dir { .. } | Item::CtxDir { .. } => "dir",
            Item::CtxArchive { .. } => "archive",
            _ => "file",
        }
    }

    /// Calls `f` for every entry of the item, in archive order.
    fn visit(
        &self,
        spool: &Path,
        f: &mut dyn FnMut(&mut Entry) -> Result<(), Error>,
    ) -> Result<(), Error> {
        match self {
            Item::Dir {
                root,
                path,
                owner_from_source,
                ..
            }
            | Item::File {
                root,
                path,
                owner_from_source,
                ..
            } => {
                let base = match self {
                    Item::File { base, .. } => base.clone(),
                    _ => String::new(),
                };
                let fs = ContainerFs::open(root, &[], true)?;
                let mut tmp = tempfile::tempfile_in(spool)?;
                let src = if matches!(self, Item::Dir { .. }) {
                    format!("{}/.", path.trim_end_matches('/'))
                } else {
                    path.clone()
                };
                fs.archive(&src, |_| Ok(()), &mut tmp)?;
                tmp.seek(SeekFrom::Start(0))?;
                let mut ar = tar::Archive::new(&mut tmp);
                for e in ar.entries().map_err(io_err)? {
                    let mut e = e.map_err(io_err)?;
                    let raw = e.path_bytes().into_owned();
                    let name = String::from_utf8_lossy(&raw).into_owned();
                    // Dir items are rooted at ".", file items at their base name.
                    let rel = if matches!(self, Item::Dir { .. }) {
                        name.trim_start_matches("./")
                            .trim_end_matches('/')
                            .to_string()
                    } else {
                        match name.split_once('/') {
                            Some((_, r)) => r.trim_end_matches('/').to_string(),
                            None => String::new(),
                        }
                    };
                    let rel = if rel == "." { String::new() } else { rel };
                    let link = e
                        .link_name_bytes()
                        .map(|l| String::from_utf8_lossy(&l).into_owned());
                    let link = if e.header().entry_type() == tar::EntryType::Link {
                        // archive() names hard-link targets like the entries.
                        link.map(|l| {
                            if matches!(self, Item::Dir { .. }) {
                                l.trim_start_matches("./").to_string()
                            } else {
                                l.split_once('/')
                                    .map(|(_, r)| r.to_string())
                                    .unwrap_or_default()
                            }
                        })
                    } else {
                        link
                    };
                    let header = e.header().clone();
                    let mut entry = Entry {
                        rel,
                        base: base.clone(),
                        header,
                        link,
                        data: &mut e,
                        keep_owner: *owner_from_source,
                    };
                    f(&mut entry)?;
                }
                Ok(())
            }
            Item::CtxDir { ctx, key } => {
                let Some(root) = ctx.get(key) else {
                    return Ok(());
                };
                let mut top = Entry {
                    rel: String::new(),
                    base: String::new(),
                    header: root.header(),
                    link: None,
                    data: &mut std::io::empty(),
                    keep_owner: false,
                };
                f(&mut top)?;
                for (rel, node) in ctx.descendants(key) {
                    let link = match &node.kind {
                        berth_build::context::Kind::Symlink(t) => Some(t.clone()),
                        _ => None,
                    };
                    let mut data = ctx.reader(node);
                    f(&mut Entry {
                        rel: rel.to_string(),
                        base: String::new(),
                        header: node.header(),
                        link,
                        data: &mut data,
                        keep_owner: false,
                    })?;
                }
                Ok(())
            }
            Item::CtxFile { ctx, key, base } => {
                let Some(node) = ctx.get(key) else {
                    return Ok(());
                };
                let mut data = ctx.reader(node);
                f(&mut Entry {
                    rel: String::new(),
                    base: base.clone(),
                    header: node.header(),
                    link: None,
                    data: &mut data,
                    keep_owner: false,
                })
            }
            Item::CtxArchive { ctx, key } => {
                let Some(node) = ctx.get(key) else {
                    return Ok(());
                };
                let mut raw = ctx.reader(node);
                let mut input = berth_image::decompress(&mut raw)?;
                let mut ar = tar::Archive::new(&mut input);
                for e in ar.entries().map_err(io_err)? {
                    let mut e = e.map_err(io_err)?;
                    let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
                    let Some(rel) = clean_rel(&name) else {
                        continue;
                    };
                    let link = e
                        .link_name_bytes()
                        .map(|l| String::from_utf8_lossy(&l).into_owned());
                    let link = if e.header().entry_type() == tar::EntryType::Link {
                        link.and_then(|l| clean_rel(&l))
                    } else {
                        link
                    };
                    let header = e.header().clone();
                    let mut entry = Entry {
                        rel,
                        base: String::new(),
                        header,
                        link,
                        data: &mut e,
                        keep_owner: true,
                    };
                    f(&mut entry)?;
                }
                Ok(())
            }
            // ADD of a URL: 0600, as docker writes downloads; a heredoc file: 0644.
            Item::Url { name, content } => one_file(name, content, 0o600, f),
            Item::Heredoc { name, content } => one_file(name, content.as_bytes(), 0o644, f),
        }
    }
}
