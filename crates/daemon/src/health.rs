//! Health checks: docker's HEALTHCHECK probes, run as execs in the container on the
//! configured interval, with State.Health and `health_status` events.

use crate::containers::Ctr;
use crate::exec::{Exec, ExecState};
use crate::state::State;
use berth_api::models;
use berth_runtime::client::AttachOptions;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Health {
    /// "starting", "healthy" or "unhealthy".
    pub status: String,
    pub failing_streak: i64,
    pub log: Vec<Probe>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Probe {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub exit_code: i64,
    pub output: String,
}

impl Health {
    /// Docker's State.Health JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let ts = |t: &DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        serde_json::json!({
            "Status": self.status,
            "FailingStreak": self.failing_streak,
            "Log": self.log.iter().map(|p| serde_json::json!({
                "Start": ts(&p.start),
                "End": ts(&p.end),
                "ExitCode": p.exit_code,
                "Output": p.output,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Docker keeps the last 5 probe results and 4 KiB of each one's output.
const MAX_LOG: usize = 5;
const MAX_OUTPUT: usize = 4096;

struct Plan {
    cmd: Vec<String>,
    interval: Duration,
    timeout: Duration,
    start_period: Duration,
    start_interval: Duration,
    retries: i64,
}

fn dur(ns: Option<i64>, default: Duration) -> Duration {
    match ns {
        Some(n) if n > 0 => Duration::from_nanos(n as u64),
        _ => default,
    }
}

/// The probe to run, if the container has one (`NONE` or an empty test disables it).
fn plan(cfg: &models::ContainerConfig) -> Option<Plan> {
    let hc = cfg.healthcheck.as_ref()?;
    let test = hc.test.as_ref()?;
    let cmd = match test.first().map(String::as_str) {
        Some("CMD") => test[1..].to_vec(),
        Some("CMD-SHELL") => {
            let mut sh = cfg
                .shell
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
            sh.push(test.get(1..).map(|t| t.join(" ")).unwrap_or_default());
            sh
        }
        _ => return None,
    };
    if cmd.is_empty() {
        return None;
    }
    Some(Plan {
        cmd,
        interval: dur(hc.interval, Duration::from_secs(30)),
        timeout: dur(hc.timeout, Duration::from_secs(30)),
        start_period: dur(hc.start_period, Duration::ZERO),
        start_interval: dur(hc.start_interval, Duration::from_secs(5)),
        retries: hc.retries.filter(|r| *r > 0).unwrap_or(3),
    })
}

/// Output of a multiplexed (non-TTY) exec stream, frames concatenated.
fn demux(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 8 <= raw.len() {
        let len = u32::from_be_bytes([raw[i + 4], raw[i + 5], raw[i + 6], raw[i + 7]]) as usize;
        let end = (i + 8 + len).min(raw.len());
        out.extend_from_slice(&raw[i + 8..end]);
        i = end;
    }
    out
}

impl State {
    /// Starts the health monitor of a container that just started (if it has a probe).
    pub fn start_health(self: &Arc<Self>, c: &Arc<Ctr>) {
        let rec = c.rec();
        let Some(p) = plan(&rec.config) else {
            return;
        };
        let seen = c.events.borrow().exits;
        c.update(|r| {
            r.state.health = Some(Health {
                status: "starting".into(),
                ..Default::default()
            })
        });
        let me = self.clone();
        let c = c.clone();
        tokio::spawn(async move {
            let began = tokio::time::Instant::now();
            let mut rx = c.events.subscribe();
            loop {
                let in_start = began.elapsed() < p.start_period;
                let wait = if in_start && !p.start_period.is_zero() {
                    p.start_interval.min(p.interval)
                } else {
                    p.interval
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = rx.changed() => {}
                }
                let ev = rx.borrow_and_update().clone();
                let rec = c.rec();
                if ev.exits > seen || ev.removed || !rec.state.running {
                    return;
                }
                if rec.state.paused {
                    continue;
                }
                let start = Utc::now();
                let (code, output) = me.run_probe(&c, p.cmd.clone(), p.timeout).await;
                let end = Utc::now();
                // The container may have stopped while the probe ran.
                if c.events.borrow().exits > seen {
                    return;
                }
                let in_start = began.elapsed() < p.start_period;
                let (before, after) = c.update(|r| {
                    let h = r.state.health.get_or_insert_with(Default::default);
                    let before = h.status.clone();
                    h.log.push(Probe {
                        start,
                        end,
                        exit_code: code,
                        output: output.clone(),
                    });
                    if h.log.len() > MAX_LOG {
                        h.log.remove(0);
                    }
                    if code == 0 {
                        h.failing_streak = 0;
                        h.status = "healthy".into();
                    } else if !(in_start && h.status == "starting") {
                        // Failures during the start period don't count (docker).
                        h.failing_streak += 1;
                        if h.failing_streak >= p.retries {
                            h.status = "unhealthy".into();
                        }
                    }
                    (before, h.status.clone())
                });
                let _ = me.persist(&c.rec());
                if before != after {
                    me.ctr_event(&c.rec(), &format!("health_status: {after}"), &[]);
                }
            }
        });
    }

    /// Runs one probe as an exec; (exit code, output). A probe over its timeout is killed
    /// and counts as a failure, with docker's message.
    async fn run_probe(&self, c: &Arc<Ctr>, cmd: Vec<String>, timeout: Duration) -> (i64, String) {
        let ex = Arc::new(Exec {
            id: crate::util::new_id(),
            container_id: c.id.clone(),
            config: models::ExecConfig {
                cmd: Some(cmd),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
            st: Mutex::new(ExecState::default()),
            done: tokio::sync::watch::channel(false).0,
        });
        let client = match self.exec_prepare(&ex, false).await {
            Ok(c) => c,
            Err(e) => return (-1, e.message),
        };
        let dir = ex.state().dir;
        let r = async {
            let mut stream = client
                .attach(AttachOptions {
                    stdin: false,
                    stdout: true,
                    stderr: true,
                    detach_keys: Some(vec![]),
                })
                .await
                .map_err(|e| e.to_string())?;
            client.start().await.map_err(|e| e.to_string())?;
            let run = async {
                let mut raw = Vec::new();
                let _ = stream.read_to_end(&mut raw).await;
                let code = client
                    .wait()
                    .await
                    .map(|s| s.exit_code as i64)
                    .unwrap_or(-1);
                (code, raw)
            };
            match tokio::time::timeout(timeout, run).await {
                Ok((code, raw)) => {
                    let mut out = demux(&raw);
                    out.truncate(MAX_OUTPUT);
                    Ok((code, String::from_utf8_lossy(&out).to_string()))
                }
                Err(_) => {
                    let _ = client.kill(libc::SIGKILL).await;
                    Ok((
                        -1,
                        format!(
                            "Health check exceeded timeout ({})",
                            crate::util::go_duration(timeout)
                        ),
                    ))
                }
            }
        }
        .await;
        if let Some(d) = dir {
            let _ = tokio::fs::remove_dir_all(d).await;
        }
        match r {
            Ok(v) => v,
            Err(e) => (-1, e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_plans() {
        let mut cfg = models::ContainerConfig {
            healthcheck: Some(models::HealthConfig {
                test: Some(vec!["CMD-SHELL".into(), "test -f /ok".into()]),
                interval: Some(2_000_000_000),
                ..Default::default()
            }),
            ..Default::default()
        };
        let p = plan(&cfg).unwrap();
        assert_eq!(p.cmd, vec!["/bin/sh", "-c", "test -f /ok"]);
        assert_eq!(p.interval, Duration::from_secs(2));
        assert_eq!(p.timeout, Duration::from_secs(30));
        assert_eq!(p.retries, 3);
        cfg.healthcheck.as_mut().unwrap().test = Some(vec!["NONE".into()]);
        assert!(plan(&cfg).is_none());
        cfg.healthcheck.as_mut().unwrap().test = Some(vec!["CMD".into(), "true".into()]);
        assert_eq!(plan(&cfg).unwrap().cmd, vec!["true"]);
    }

    #[test]
    fn demuxes_frames() {
        let mut raw = vec![1, 0, 0, 0, 0, 0, 0, 3];
        raw.extend_from_slice(b"abc");
        raw.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 2]);
        raw.extend_from_slice(b"de");
        assert_eq!(demux(&raw), b"abcde");
    }
}
