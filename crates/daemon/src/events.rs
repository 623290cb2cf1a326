//! The event bus behind `/events`: every lifecycle change of containers, images, networks and
//! volumes is published here, kept in a bounded history (for `since`) and fanned out to
//! subscribers.

use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use tokio::sync::broadcast;

/// Docker's event message, including the pre-1.22 `status`/`id`/`from` fields that the
/// docker CLI's default format still prints for containers.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(rename = "Type")]
    pub typ: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    pub scope: String,
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes")]
    pub attributes: HashMap<String, String>,
}

/// How many past events `since` can reach (docker keeps 256 by default; we keep more).
const HISTORY: usize = 1024;

pub struct Bus {
    tx: broadcast::Sender<Event>,
    history: Mutex<VecDeque<Event>>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus {
            tx: broadcast::channel(1024).0,
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
        }
    }
}

impl Bus {
    pub fn publish(&self, typ: &str, action: &str, id: &str, attributes: HashMap<String, String>) {
        let now = chrono::Utc::now();
        let nanos = now.timestamp_nanos_opt().unwrap_or(0);
        let container = typ == "container";
        let ev = Event {
            status: (container || typ == "image").then(|| action.to_string()),
            id: (container || typ == "image").then(|| id.to_string()),
            from: if container {
                attributes.get("image").cloned()
            } else {
                None
            },
            typ: typ.to_string(),
            action: action.to_string(),
            actor: Actor {
                id: id.to_string(),
                attributes,
            },
            scope: "local".into(),
            time: nanos / 1_000_000_000,
            time_nano: nanos,
        };
        {
            let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
            if h.len() == HISTORY {
                h.pop_front();
            }
            h.push_back(ev.clone());
        }
        let _ = self.tx.send(ev);
    }

    /// The history at the moment of subscribing, plus a receiver for what follows (no gap,
    /// no duplicate: both are taken under the history lock).
    pub fn subscribe(&self) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let rx = self.tx.subscribe();
        (h.iter().cloned().collect(), rx)
    }
}

/// Docker's event filters: type, event (action), container, image, label, network, volume,
/// daemon; values of one key are ORed, keys are ANDed.
pub fn matches(ev: &Event, f: &HashMap<String, Vec<String>>) -> bool {
    for (k, vals) in f {
        if vals.is_empty() {
            continue;
        }
        let a = &ev.actor.attributes;
        let ok = match k.as_str() {
            "type" => vals.iter().any(|v| v == &ev.typ),
            "event" => vals
                .iter()
                .any(|v| v == &ev.action || ev.action.split(':').next() == Some(v.as_str())),
            "container" => {
                ev.typ == "container"
                    && vals
                        .iter()
                        .any(|v| ev.actor.id.starts_with(v.as_str()) || a.get("name") == Some(v))
                    || ev.typ == "network" && vals.iter().any(|v| a.get("container") == Some(v))
            }
            "image" => vals.iter().any(|v| {
                (ev.typ == "image" && ev.actor.id.contains(v.as_str()))
                    || a.get("image") == Some(v)
                    || a.get("name") == Some(v) && ev.typ == "image"
            }),
            "network" => {
                ev.typ == "network"
                    && vals
                        .iter()
                        .any(|v| ev.actor.id.starts_with(v.as_str()) || a.get("name") == Some(v))
            }
            "volume" => {
                ev.typ == "volume"
                    && vals
                        .iter()
                        .any(|v| &ev.actor.id == v || a.get("name") == Some(v))
            }
            "label" => vals.iter().all(|v| match v.split_once('=') {
                Some((lk, lv)) => a.get(lk).map(|x| x == lv).unwrap_or(false),
                None => a.contains_key(v),
            }),
            "daemon" => ev.typ == "daemon",
            "scope" => vals.iter().any(|v| v == "local"),
            _ => true,
        };
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn history_and_filters() {
        let bus = Bus::default();
        bus.publish(
            "container",
            "create",
            "abc123",
            attrs(&[("name", "web"), ("image", "busybox")]),
        );
        bus.publish(
            "container",
            "die",
            "abc123",
            attrs(&[("name", "web"), ("exitCode", "3")]),
        );
        bus.publish(
            "network",
            "connect",
            "net1",
            attrs(&[("container", "abc123"), ("name", "front")]),
        );
        let (h, _rx) = bus.subscribe();
        assert_eq!(h.len(), 3);
        let j = serde_json::to_value(&h[0]).unwrap();
        assert_eq!(j["status"], "create");
        assert_eq!(j["from"], "busybox");
        assert_eq!(j["Actor"]["Attributes"]["name"], "web");
        let f = |k: &str, v: &str| HashMap::from([(k.to_string(), vec![v.to_string()])]);
        assert_eq!(
            h.iter()
                .filter(|e| matches(e, &f("type", "container")))
                .count(),
            2
        );
        assert_eq!(
            h.iter().filter(|e| matches(e, &f("event", "die"))).count(),
            1
        );
        assert_eq!(
            h.iter()
                .filter(|e| matches(e, &f("container", "web")))
                .count(),
            2
        );
        assert_eq!(
            h.iter()
                .filter(|e| matches(e, &f("network", "front")))
                .count(),
            1
        );
        assert_eq!(
            h.iter()
                .filter(|e| matches(e, &f("label", "exitCode=3")))
                .count(),
            1
        );
    }

    #[tokio::test]
    async fn subscribers_see_new_events() {
        let bus = Bus::default();
        let (h, mut rx) = bus.subscribe();
        assert!(h.is_empty());
        bus.publish("image", "tag", "sha256:x", attrs(&[("name", "busybox:v2")]));
        let e = rx.recv().await.unwrap();
        assert_eq!(e.action, "tag");
    }
}
