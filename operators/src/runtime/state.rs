//! The lifecycle of a [`KafkaStreams`](super::KafkaStreams) instance, with Kafka Streams' state
//! names, and a listener told of every change.

use std::sync::{Arc, Mutex, MutexGuard};

/// Where an instance is in its life, as Kafka Streams' `KafkaStreams.State`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Built, the stream thread not started yet.
    Created,
    /// Joining the group, or restoring the stores of newly assigned tasks.
    Rebalancing,
    /// Every assigned task is restored and processing.
    Running,
    /// `close` was called; committing and leaving the group.
    PendingShutdown,
    /// The stream thread stopped on a fatal error (nothing of its open transaction committed).
    Error,
    /// Stopped cleanly.
    NotRunning,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Created => "CREATED",
            State::Rebalancing => "REBALANCING",
            State::Running => "RUNNING",
            State::PendingShutdown => "PENDING_SHUTDOWN",
            State::Error => "ERROR",
            State::NotRunning => "NOT_RUNNING",
        }
    }

    /// Terminal states are never left.
    pub fn is_terminal(self) -> bool {
        matches!(self, State::Error | State::NotRunning)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Called with `(new, old)` on every change, from the thread that made it.
pub type StateListener = Box<dyn Fn(State, State) + Send + Sync>;

/// What readiness needs of an instance, for a health endpoint to keep: its state, and the
/// dependency it waits for with partitions paused, if any.
#[derive(Clone)]
pub struct Health(pub(crate) StateCell);

impl Health {
    pub fn state(&self) -> State {
        self.0.get()
    }

    pub fn waiting_on(&self) -> Option<String> {
        self.0.waiting_on()
    }
}

/// The current state, shared by the handle and the stream thread.
#[derive(Clone)]
pub(crate) struct StateCell {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    listener: Mutex<Option<StateListener>>,
    /// A dependency the instance waits for, with partitions paused: not ready meanwhile.
    waiting_on: Mutex<Option<String>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A listener that panicked poisons nothing we rely on.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl StateCell {
    pub fn new(listener: Option<StateListener>) -> Self {
        StateCell {
            inner: Arc::new(Inner {
                state: Mutex::new(State::Created),
                listener: Mutex::new(listener),
                waiting_on: Mutex::new(None),
            }),
        }
    }

    pub fn get(&self) -> State {
        *lock(&self.inner.state)
    }

    pub fn waiting_on(&self) -> Option<String> {
        lock(&self.inner.waiting_on).clone()
    }

    pub fn set_waiting_on(&self, dependency: Option<String>) {
        *lock(&self.inner.waiting_on) = dependency;
    }

    /// Moves to `new` unless the state is terminal, or `PendingShutdown` and `new` is not
    /// terminal (a rebalance during close does not undo the close).
    pub fn set(&self, new: State) {
        let old = {
            let mut state = lock(&self.inner.state);
            let old = *state;
            let allowed = old != new
                && !old.is_terminal()
                && (old != State::PendingShutdown || new.is_terminal());
            if !allowed {
                return;
            }
            *state = new;
            old
        };
        tracing::info!(from = %old, to = %new, "streams state changed");
        if let Some(listener) = lock(&self.inner.listener).as_ref() {
            listener(new, old);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listener_sees_every_change_and_terminal_states_stay() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let cell = StateCell::new(Some(Box::new(move |new, old| {
            log.lock().unwrap().push((old, new))
        })));
        cell.set(State::Rebalancing);
        cell.set(State::Running);
        cell.set(State::Running);
        cell.set(State::PendingShutdown);
        cell.set(State::Rebalancing);
        cell.set(State::NotRunning);
        cell.set(State::Running);
        assert_eq!(cell.get(), State::NotRunning);
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                (State::Created, State::Rebalancing),
                (State::Rebalancing, State::Running),
                (State::Running, State::PendingShutdown),
                (State::PendingShutdown, State::NotRunning),
            ]
        );
    }
}
