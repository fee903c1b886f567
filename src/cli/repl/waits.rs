//! What `wait-for` sees: the names of the events printed so far, and
//! which of them an earlier `wait-for` already used. Pure.
//!
//! A `wait-for` looks at the events since the last command that was not
//! a `wait` or `wait-for` (so an event caused by that command counts even
//! when it arrived during an earlier wait, or before the `wait-for` line
//! was reached), takes the oldest unused one with its name, and marks it
//! used. If no such event is there but an unused `ended` is, the call
//! ended first and the wait fails (unless it waits for `ended`).

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
    /// Where the events of the last command begin.
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

    /// A command other than `wait`/`wait-for` is about to run: later
    /// waits look at the events from here on.
    pub fn command(&mut self) {
        self.window = self.entries.len();
    }

    /// Whether `wait-for event` is over: `Some(Ok)` when the event is
    /// there, `Some(Err(reason))` when a call ended instead, `None` to
    /// keep waiting.
    pub fn check(&mut self, event: &str) -> Option<Result<(), EndReason>> {
        let recent = &mut self.entries[self.window..];
        if let Some(e) = recent.iter_mut().find(|e| !e.used && e.name == event) {
            e.used = true;
            return Some(Ok(()));
        }
        let ended = recent.iter_mut().find(|e| !e.used && e.ended.is_some())?;
        ended.used = true;
        ended.ended.clone().map(Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_that_came_before_the_wait_counts_once() {
        let mut log = EventLog::default();
        log.command();
        log.push("calling", None);
        log.push("answered", None);
        assert_eq!(log.check("answered"), Some(Ok(())));
        assert_eq!(log.check("answered"), None, "used already");
        log.push("answered", None);
        assert_eq!(log.check("answered"), Some(Ok(())));
    }

    #[test]
    fn events_of_one_command_serve_several_waits_in_any_order() {
        let mut log = EventLog::default();
        log.command();
        log.push("held", None);
        log.push("answered", None);
        assert_eq!(log.check("answered"), Some(Ok(())));
        assert_eq!(log.check("held"), Some(Ok(())));
        // A new command: older unused events no longer count.
        log.push("dtmf", None);
        log.command();
        assert_eq!(log.check("dtmf"), None);
    }

    #[test]
    fn a_call_ending_first_fails_the_wait_except_for_ended() {
        let mut log = EventLog::default();
        log.command();
        log.push("ringing", None);
        let busy = EndReason::Rejected {
            status: 486,
            reason: "Busy Here".into(),
        };
        log.push("ended", Some(busy.clone()));
        assert_eq!(log.check("answered"), Some(Err(busy)));

        let mut log = EventLog::default();
        log.push("ended", Some(EndReason::RemoteHangup));
        assert_eq!(log.check("ended"), Some(Ok(())));
    }
}
