//! GET /containers/{id}/stats: samples from berth_runtime::stats, streamed as docker does
//! (one JSON object per line, each carrying the previous sample as precpu_stats).

use super::blocking;
use crate::containers::Ctr;
use crate::error::ApiResult;
use crate::http::{AppState, Params};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use berth_api::Error;
use berth_runtime::stats::{self, Stats};
use std::sync::Arc;
use std::time::Duration;

/// Docker's collector interval.
const INTERVAL: Duration = Duration::from_secs(1);

/// One sample of a running container, or None when it is not running (or its cgroup went
/// away since), with name and id filled in.
async fn sample(st: &AppState, c: &Arc<Ctr>) -> Result<Option<Stats>, Error> {
    let rec = c.rec();
    if !rec.state.running || rec.state.restarting {
        return Ok(None);
    }
    let cgroup = st.cgroup_path(&c.id);
    // Only a container with a namespace of its own has interfaces to report.
    let net_pid = st.networks.sandbox_key(&rec).map(|_| rec.state.pid as i32);
    let name = format!("/{}", rec.name);
    let id = c.id.clone();
    blocking(move || {
        Ok(stats::sample(&stats::Host::default(), &cgroup, net_pid)
            .ok()
            .map(|mut s| {
                s.name = name;
                s.id = id;
                s
            }))
    })
    .await
}

/// Where a stats stream is: the first sample to send, the last one sent, or finished.
enum Phase {
    First(Stats),
    Next(Stats),
    Done,
}

fn line(s: &Stats) -> Result<bytes::Bytes, std::io::Error> {
    let mut v = serde_json::to_vec(s).map_err(std::io::Error::other)?;
    v.push(b'\n');
    Ok(bytes::Bytes::from(v))
}

pub async fn stats(
    State(st): State<AppState>,
    Path(id): Path<String>,
    p: Params,
) -> ApiResult<Response> {
    let c = st.lookup(&id)?;
    let stream = p.bool("stream", true);
    let one_shot = p.bool("one-shot", false);
    if stream && one_shot {
        return Err(Error::invalid("cannot have stream=true and one-shot=true").into());
    }
    let rec = c.rec();
    let zeroed = Stats::zeroed(&format!("/{}", rec.name), &c.id);
    let first = match sample(&st, &c).await? {
        Some(s) => s,
        // Not running: one zeroed object, as docker sends.
        None => return Ok(respond(Body::from(line(&zeroed)?))),
    };
    if !stream {
        if one_shot {
            return Ok(respond(Body::from(line(&first)?)));
        }
        // Without one-shot docker primes precpu with a sample a second earlier.
        tokio::time::sleep(INTERVAL).await;
        let out = match sample(&st, &c).await? {
            Some(mut s) => {
                s.follow(&first);
                s
            }
            None => zeroed,
        };
        return Ok(respond(Body::from(line(&out)?)));
    }
    // Stream: the first object now (zero precpu), then one a second until the client goes
    // away or the container stops (a last zeroed object, then the end).
    let body = futures::stream::unfold(
        (st, c, zeroed, Phase::First(first)),
        |(st, c, zeroed, phase)| async move {
            let (item, next) = match phase {
                Phase::Done => return None,
                Phase::First(s) => (line(&s), Phase::Next(s)),
                Phase::Next(prev) => {
                    tokio::time::sleep(INTERVAL).await;
                    match sample(&st, &c).await {
                        Ok(Some(mut s)) => {
                            s.follow(&prev);
                            (line(&s), Phase::Next(s))
                        }
                        Ok(None) => (line(&zeroed), Phase::Done),
                        Err(e) => (Err(std::io::Error::other(e.message)), Phase::Done),
                    }
                }
            };
            Some((item, (st, c, zeroed, next)))
        },
    );
    Ok(respond(Body::from_stream(body)))
}

fn respond(body: Body) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap_or_default()
}
