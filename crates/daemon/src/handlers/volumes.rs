//! /volumes: list, create, inspect, remove, prune.

use super::blocking;
use crate::error::ApiResult;
use crate::http::{json, AppState, JsonBody, Params};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_volume::{CreateRequest, Volume};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

fn volume_json(st: &crate::state::State, v: &Volume) -> serde_json::Value {
    v.to_json(&st.volumes.data_path(&v.name))
}

pub async fn list(State(st): State<AppState>, p: Params) -> ApiResult<Response> {
    let f = p.filters()?;
    let st2 = st.clone();
    let vols = blocking(move || {
        let in_use = st2.volumes_in_use();
        Ok(st2.volumes.list_filtered(&f, &in_use)?)
    })
    .await?;
    let out: Vec<_> = vols.iter().map(|v| volume_json(&st, v)).collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"Volumes": out, "Warnings": []}),
    ))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct CreateBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    driver: Option<String>,
    #[serde(default)]
    driver_opts: Option<HashMap<String, String>>,
    #[serde(default)]
    labels: Option<HashMap<String, String>>,
}

fn sorted(m: Option<HashMap<String, String>>) -> Option<BTreeMap<String, String>> {
    m.map(|m| m.into_iter().collect())
}

pub async fn create(
    State(st): State<AppState>,
    JsonBody(b): JsonBody<CreateBody>,
) -> ApiResult<Response> {
    let req = CreateRequest {
        name: b.name.unwrap_or_default(),
        driver: b.driver.unwrap_or_default(),
        options: sorted(b.driver_opts),
        labels: sorted(b.labels),
    };
    let st2 = st.clone();
    let v = blocking(move || Ok(st2.volumes.create(&req)?)).await?;
    let out = volume_json(&st, &v);
    let name = out["Name"].as_str().unwrap_or_default().to_string();
    let driver = out["Driver"].as_str().unwrap_or("local").to_string();
    st.events.publish(
        "volume",
        "create",
        &name,
        HashMap::from([("driver".to_string(), driver)]),
    );
    Ok(json(StatusCode::CREATED, &out))
}

pub async fn inspect(State(st): State<AppState>, Path(name): Path<String>) -> ApiResult<Response> {
    let v = st.volumes.get(&name)?;
    Ok(json(StatusCode::OK, &volume_json(&st, &v)))
}

pub async fn remove(
    State(st): State<AppState>,
    Path(name): Path<String>,
    p: Params,
) -> ApiResult<Response> {
    let force = p.bool("force", false);
    let st2 = st.clone();
    let n2 = name.clone();
    blocking(move || st2.remove_volume(&n2, force)).await?;
    st.events.publish(
        "volume",
        "destroy",
        &name,
        HashMap::from([("driver".to_string(), "local".to_string())]),
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn prune(State(st): State<AppState>, p: Params) -> ApiResult<Response> {
    let f = p.filters()?;
    let st2 = st.clone();
    let (deleted, reclaimed) = blocking(move || {
        let in_use = st2.volumes_in_use();
        Ok(st2.volumes.prune(&f, &in_use)?)
    })
    .await?;
    for n in &deleted {
        st.events.publish(
            "volume",
            "destroy",
            n,
            HashMap::from([("driver".to_string(), "local".to_string())]),
        );
    }
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"VolumesDeleted": deleted, "SpaceReclaimed": reclaimed}),
    ))
}
