//! What `wait-for` sees: the names of the events printed so far, and
//! which of them an earlier `wait-for` already used. Pure.
//!
//! A `wait-for` looks at the events since the previous `wait-for` began
//! (so an event that arrived while the script waited for another one,
//! or before the command was reached, still counts), takes the oldest
//! unused one with its name, and marks it used. If no such event is
//! there but an unused `ended` is, the call ended first and the wait
//! fails (unless it waits for `ended`).

use crate::ua::EndReason;

#[derive(Debug)]
struct Entry {
    name: String,
    ended: Option<EndReason>,
    used: bool,
}

/// The events seen, for `wait-for`.
#[derive(Debug, Default)]
pub struct EventLog {
    entries: Vec<Entry>,
    /// Where the previous `wait-for` began.
    window: usize,
}

impl EventLog {
    /// Records an event (`ended` carries how its call ended).
    pub fn push(&mut self, name: &str, ended: Option<EndReason>) {
        self.entries.push(Entry {
            name: name.to_string(),
            ended,
            used: false,
        });
    }

    /// The position a `wait-for` starting now begins at.
    pub fn mark(&self) -> usize {
        self.entries.len()
    }

    /// Whether `wait-for event` (begun at `start`) is over: `Some(Ok)`
    /// when the event is there, `Some(Err(reason))` when a call ended
    /// instead, `None` to keep waiting.
    pub fn check(&mut self, event: &str, start: usize) -> Option<Result<(), EndReason>> {
        let window = self.window.min(start);
        let found = self.entries[window..]
            .iter_mut()
            .find(|e| !e.used && e.name == event);
        if let Some(e) = found {
            e.used = true;
            self.window = start;
            return Some(Ok(()));
        }
        let ended = self.entries[window..]
            .iter_mut()
            .find(|e| !e.used && e.ended.is_some())?;
        ended.used = true;
        self.window = start;
        ended.ended.clone().map(Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_that_came_before_the_wait_counts_once() {
        let mut log = EventLog::default();
        log.push("calling", None);
        log.push("answered", None);
        let start = log.mark();
        assert_eq!(log.check("answered", start), Some(Ok(())));
        let start = log.mark();
        assert_eq!(log.check("answered", start), None, "used already");
        log.push("answered", None);
        assert_eq!(log.check("answered", start), Some(Ok(())));
    }

    #[test]
    fn events_during_one_wait_remain_for_the_next() {
        let mut log = EventLog::default();
        let first = log.mark();
        log.push("held", None);
        log.push("answered", None);
        assert_eq!(log.check("answered", first), Some(Ok(())));
        let second = log.mark();
        assert_eq!(log.check("held", second), Some(Ok(())));
        // Events before the previous wait's start are not looked at.
        let third = log.mark();
        log.push("dtmf", None);
        assert_eq!(log.check("held", third), None);
    }

    #[test]
    fn a_call_ending_first_fails_the_wait_except_for_ended() {
        let mut log = EventLog::default();
        let start = log.mark();
        log.push("ringing", None);
        let busy = EndReason::Rejected {
            status: 486,
            reason: "Busy Here".into(),
        };
        log.push("ended", Some(busy.clone()));
        assert_eq!(log.check("answered", start), Some(Err(busy)));

        let mut log = EventLog::default();
        let start = log.mark();
        log.push("ended", Some(EndReason::RemoteHangup));
        assert_eq!(log.check("ended", start), Some(Ok(())));
    }
}
