//! Liveness and readiness from the state of every stream-processing instance in this process,
//! as their state listeners report it.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, OnceLock};

use axum::http::StatusCode;
use axum::Json;
use operators::runtime::{Health, State, StateListener};

fn states() -> MutexGuard<'static, BTreeMap<String, State>> {
    static STATES: OnceLock<Mutex<BTreeMap<String, State>>> = OnceLock::new();
    STATES.get_or_init(Default::default).lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A listener that keeps `application_id`'s state for `/health` and `/ready`.
pub fn listener(application_id: &str) -> StateListener {
    let application_id = application_id.to_string();
    states().insert(application_id.clone(), State::Created);
    Box::new(move |new, _old| {
        states().insert(application_id.clone(), new);
    })
}

fn dependencies() -> MutexGuard<'static, BTreeMap<String, Health>> {
    static HEALTH: OnceLock<Mutex<BTreeMap<String, Health>>> = OnceLock::new();
    HEALTH.get_or_init(Default::default).lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Keeps `application_id`'s handle, so `/ready` also says when it waits for a dependency that
/// is down (its partitions paused).
pub fn watch_dependencies(application_id: &str, health: Health) {
    dependencies().insert(application_id.to_string(), health);
}

/// The dependency each instance waits for, by application id.
fn waiting() -> BTreeMap<String, String> {
    dependencies().iter().filter_map(|(app, health)| Some((app.clone(), health.waiting_on()?))).collect()
}

/// Each instance's state, or `WAITING_ON:<dependency>` while it runs with partitions paused.
fn report() -> BTreeMap<String, String> {
    let waiting = waiting();
    states()
        .iter()
        .map(|(app, state)| {
            let shown = match waiting.get(app) {
                Some(dependency) if *state == State::Running => format!("WAITING_ON:{dependency}"),
                _ => state.as_str().to_owned(),
            };
            (app.clone(), shown)
        })
        .collect()
}

/// How long a stream thread may show no sign of life before the instance counts as dead
/// (`Health::stalled_for`).
pub const STALL_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Alive unless an instance stopped on an error or its stream thread stalled.
#[utoipa::path(
    get,
    path = "/health",
    tag = "admin",
    responses(
        (status = 200, description = "Alive: each stream instance's state, by application id", body = BTreeMap<String, String>),
        (status = 503, description = "An instance stopped on an error (ERROR), or its stream thread stalled", body = BTreeMap<String, String>),
    )
)]
pub async fn health() -> (StatusCode, Json<BTreeMap<String, String>>) {
    let stalled = dependencies().values().any(|health| health.stalled_for().is_some_and(|silent| silent > STALL_LIMIT));
    let failed = stalled || states().values().any(|state| *state == State::Error);
    (if failed { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK }, Json(report()))
}

/// Ready once every instance is RUNNING (assigned and restored) and waits for no dependency.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "admin",
    responses(
        (status = 200, description = "Ready: each instance's state, by application id", body = BTreeMap<String, String>),
        (status = 503, description = "An instance is not RUNNING, or is WAITING_ON:<dependency>", body = BTreeMap<String, String>),
    )
)]
pub async fn ready() -> (StatusCode, Json<BTreeMap<String, String>>) {
    (if is_ready([]) { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(report()))
}

/// `/ready`'s answer for this process, which also requires each of `expected` to run here: a
/// caller that starts instances in process must not take the moment before they registered,
/// when "every instance is RUNNING" holds of none, for ready.
pub fn is_ready<'a>(expected: impl IntoIterator<Item = &'a str>) -> bool {
    let running = {
        let states = states();
        expected.into_iter().all(|app| states.contains_key(app)) && states.values().all(|s| *s == State::Running)
    };
    running && waiting().is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expected_instance_that_never_registered_is_not_ready() {
        assert!(!is_ready(["an-application-never-started-here"]));
    }

    #[test]
    fn an_expected_instance_that_is_not_running_is_not_ready() {
        let app = "health-test-application";
        let on_change = listener(app);
        assert!(!is_ready([app]), "CREATED is not ready");
        on_change(State::Running, State::Created);
        assert_eq!(states().get(app), Some(&State::Running));
        on_change(State::Rebalancing, State::Running);
        assert!(!is_ready([app]), "REBALANCING is not ready");
    }
}
