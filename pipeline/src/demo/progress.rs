//! A progress counter for the demo: redrawn in place on a terminal; elsewhere (CI, a log file)
//! one line now and then, so a run that is stuck shows it in a few lines instead of hundreds.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Off a terminal: a changed count is printed at most this often…
const CHANGED_EVERY: Duration = Duration::from_secs(5);
/// …and an unchanged one this often, so a stall still shows.
const UNCHANGED_EVERY: Duration = Duration::from_secs(30);

pub struct Progress {
    label: &'static str,
    on_terminal: bool,
    /// The last count printed, and when.
    last: Mutex<Option<(usize, Instant)>>,
}

impl Progress {
    pub fn new(label: &'static str) -> Self {
        Self { label, on_terminal: std::io::stdout().is_terminal(), last: Mutex::new(None) }
    }

    pub fn show(&self, done: usize, total: usize) {
        let mut last = self.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        let due = match *last {
            None => true,
            // The final count, once.
            Some((printed, _)) if done == total => printed != total,
            Some((printed, at)) if printed != done => self.on_terminal || now - at >= CHANGED_EVERY,
            Some((_, at)) => !self.on_terminal && now - at >= UNCHANGED_EVERY,
        };
        if !due {
            return;
        }
        *last = Some((done, now));
        let mut stdout = std::io::stdout().lock();
        if self.on_terminal {
            let _ = write!(stdout, "\r  {}: {done}/{total}   ", self.label);
        } else {
            let _ = writeln!(stdout, "  {}: {done}/{total}", self.label);
        }
        let _ = stdout.flush();
    }

    /// Ends the redrawn line on a terminal.
    pub fn finish(&self) {
        if self.on_terminal && self.last.lock().map(|last| last.is_some()).unwrap_or(true) {
            println!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn off_terminal() -> Progress {
        Progress { label: "orders", on_terminal: false, last: Mutex::new(None) }
    }

    fn printed(progress: &Progress) -> Option<usize> {
        progress.last.lock().unwrap().map(|(done, _)| done)
    }

    #[test]
    fn off_a_terminal_a_count_changing_every_call_is_not_printed_every_call() {
        let progress = off_terminal();
        progress.show(1, 10);
        progress.show(2, 10);
        progress.show(3, 10);
        assert_eq!(printed(&progress), Some(1));
    }

    #[test]
    fn the_final_count_is_always_printed_once() {
        let progress = off_terminal();
        progress.show(1, 10);
        progress.show(10, 10);
        assert_eq!(printed(&progress), Some(10));
        let at = progress.last.lock().unwrap().unwrap().1;
        progress.show(10, 10);
        assert_eq!(progress.last.lock().unwrap().unwrap().1, at);
    }

    #[test]
    fn off_a_terminal_a_stalled_count_is_printed_again_after_a_while() {
        let progress = off_terminal();
        *progress.last.lock().unwrap() = Some((4, Instant::now() - UNCHANGED_EVERY));
        progress.show(4, 10);
        let (_, at) = progress.last.lock().unwrap().unwrap();
        assert!(at.elapsed() < UNCHANGED_EVERY);
    }
}
