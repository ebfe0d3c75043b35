//! The lifecycle of a [`KafkaStreams`](super::KafkaStreams) instance, with Kafka Streams' state
//! names, and a listener told of every change.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::clock::{Clock, SystemClock};

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
    pub const ALL: [State; 6] =
        [State::Created, State::Rebalancing, State::Running, State::PendingShutdown, State::Error, State::NotRunning];

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

    /// How long the stream thread has shown no sign of life; a few seconds at most while it
    /// works. Much longer means a client call that never returns (librdkafka's
    /// `send_offsets_to_transaction` can hang when the group coordinator goes away, librdkafka
    /// #5456): the process should then be restarted, which exactly-once makes safe.
    pub fn stalled_for(&self) -> Option<std::time::Duration> {
        self.0.stalled_for()
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
    /// When the stream thread last showed it was alive (epoch ms): it beats once per loop and
    /// while it restores, so a client call that never returns shows as a stall.
    last_beat_ms: AtomicI64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A listener that panicked poisons nothing we rely on.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl StateCell {
    pub fn new(listener: Option<StateListener>) -> Self {
        StateCell {
            inner: Arc::new(Inner {
                state: Mutex::new(State::Created),
                listener: Mutex::new(listener),
                waiting_on: Mutex::new(None),
                last_beat_ms: AtomicI64::new(SystemClock.now_ms()),
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

    pub fn beat(&self) {
        self.inner.last_beat_ms.store(SystemClock.now_ms(), Ordering::Relaxed);
    }

    /// How long the stream thread has not beaten, while it should (not in a terminal state).
    pub fn stalled_for(&self) -> Option<std::time::Duration> {
        if self.get().is_terminal() {
            return None;
        }
        let silent_ms = SystemClock.now_ms().saturating_sub(self.inner.last_beat_ms.load(Ordering::Relaxed));
        Some(std::time::Duration::from_millis(u64::try_from(silent_ms).unwrap_or(0)))
    }

    /// Moves to `new` unless the state is terminal, or `PendingShutdown` and `new` is not
    /// terminal (a rebalance during close does not undo the close).
    pub fn set(&self, new: State) {
        let old = {
            let mut state = lock(&self.inner.state);
            let old = *state;
            let allowed = old != new && !old.is_terminal() && (old != State::PendingShutdown || new.is_terminal());
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
    fn a_thread_that_stops_beating_shows_as_stalled_until_it_stops() {
        let cell = StateCell::new(None);
        cell.inner.last_beat_ms.store(SystemClock.now_ms() - 5_000, Ordering::Relaxed);
        assert!(cell.stalled_for().is_some_and(|silent| silent >= std::time::Duration::from_secs(5)));
        cell.beat();
        assert!(cell.stalled_for().is_some_and(|silent| silent < std::time::Duration::from_secs(5)));
        cell.set(State::NotRunning);
        assert_eq!(cell.stalled_for(), None, "a stopped instance is not stalled");
    }

    #[test]
    fn the_listener_sees_every_change_and_terminal_states_stay() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let cell = StateCell::new(Some(Box::new(move |new, old| log.lock().unwrap().push((old, new)))));
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
