//! Liveness and readiness from the state of every stream-processing instance in this process,
//! as their state listeners report it.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, OnceLock};

use axum::http::StatusCode;
use axum::Json;
use operators::runtime::{State, StateListener};

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

/// The state of `application_id` in this process, if it runs here.
pub fn state_of(application_id: &str) -> Option<State> {
    states().get(application_id).copied()
}

fn report() -> BTreeMap<String, &'static str> {
    states().iter().map(|(app, state)| (app.clone(), state.as_str())).collect()
}

/// Alive unless an instance stopped on an error.
pub async fn health() -> (StatusCode, Json<BTreeMap<String, &'static str>>) {
    let failed = states().values().any(|state| *state == State::Error);
    (if failed { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK }, Json(report()))
}

/// Ready once every instance is RUNNING (assigned and restored).
pub async fn ready() -> (StatusCode, Json<BTreeMap<String, &'static str>>) {
    let ready = states().values().all(|state| *state == State::Running);
    (if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(report()))
}
