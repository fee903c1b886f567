//! The phone's view of its calls: the numbers the user types (`hangup 2`),
//! which call is current, each call's phase and timing, and the prompt
//! text. Pure: every time is an argument.

use std::time::{Duration, Instant};

use super::command::CallId;
use crate::ua::CallHandle;

/// Which way a call goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Outgoing,
    Incoming,
}

/// Where a call is in its life, as the user sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Outgoing, INVITE sent, no ringing yet.
    Calling,
    /// Outgoing, the peer rings (180/183).
    Ringing,
    /// Incoming, waiting for `answer` or `reject`.
    Incoming,
    /// Answered.
    Active,
    /// Hung up by us, waiting for the end.
    Ending,
}

/// One call of the phone.
#[derive(Debug, Clone)]
pub struct CallEntry {
    pub id: CallId,
    /// Which line (account) the call is on.
    pub line: usize,
    pub handle: CallHandle,
    pub direction: Direction,
    /// The other party: the target URI we dialled, or the caller's From.
    pub peer: String,
    pub phase: Phase,
    pub created: Instant,
    pub answered: Option<Instant>,
    pub codec: Option<String>,
    /// We put it on hold.
    pub held: bool,
    /// The peer put us on hold.
    pub remote_held: bool,
    pub muted: bool,
}

impl CallEntry {
    /// Time since the answer (or since the call began when unanswered).
    pub fn duration(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.answered.unwrap_or(self.created))
    }

    /// A short state word for lists.
    pub fn state_word(&self) -> &'static str {
        match (self.phase, self.held, self.remote_held) {
            (Phase::Active, true, _) => "on hold",
            (Phase::Active, false, true) => "peer hold",
            (Phase::Active, false, false) => "active",
            (Phase::Calling, ..) => "calling",
            (Phase::Ringing, ..) => "ringing",
            (Phase::Incoming, ..) => "incoming",
            (Phase::Ending, ..) => "ending",
        }
    }
}

/// Why a command cannot pick a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickError {
    #[error("no call {0} (see calls)")]
    NoSuchCall(CallId),
    #[error("there is no call")]
    NoCall,
    #[error("no incoming call is ringing")]
    NoIncoming,
}

/// The calls, in the order they began.
#[derive(Debug, Default)]
pub struct Calls {
    entries: Vec<CallEntry>,
    next_id: CallId,
    current: Option<CallId>,
}

impl Calls {
    /// Adds a call and returns its number. An outgoing call becomes the
    /// current call; an incoming call does so only when there is none.
    pub fn add(
        &mut self,
        line: usize,
        handle: CallHandle,
        direction: Direction,
        peer: &str,
        now: Instant,
    ) -> CallId {
        self.next_id += 1;
        let id = self.next_id;
        let phase = match direction {
            Direction::Outgoing => Phase::Calling,
            Direction::Incoming => Phase::Incoming,
        };
        self.entries.push(CallEntry {
            id,
            line,
            handle,
            direction,
            peer: peer.to_string(),
            phase,
            created: now,
            answered: None,
            codec: None,
            held: false,
            remote_held: false,
            muted: false,
        });
        if direction == Direction::Outgoing || self.current.is_none() {
            self.current = Some(id);
        }
        id
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &CallEntry> {
        self.entries.iter()
    }

    /// The call of `line` with the UA's `handle`.
    pub fn by_handle(&self, line: usize, handle: CallHandle) -> Option<CallId> {
        self.entries
            .iter()
            .find(|c| c.line == line && c.handle == handle)
            .map(|c| c.id)
    }

    pub fn get(&self, id: CallId) -> Option<&CallEntry> {
        self.entries.iter().find(|c| c.id == id)
    }

    pub fn get_mut(&mut self, id: CallId) -> Option<&mut CallEntry> {
        self.entries.iter_mut().find(|c| c.id == id)
    }

    pub fn current(&self) -> Option<CallId> {
        self.current
    }

    /// Makes `id` the current call.
    pub fn set_current(&mut self, id: CallId) -> Result<(), PickError> {
        self.get(id).ok_or(PickError::NoSuchCall(id))?;
        self.current = Some(id);
        Ok(())
    }

    /// The given call, else the current one.
    pub fn pick(&self, id: Option<CallId>) -> Result<&CallEntry, PickError> {
        match id {
            Some(id) => self.get(id).ok_or(PickError::NoSuchCall(id)),
            None => self
                .current
                .and_then(|id| self.get(id))
                .ok_or(PickError::NoCall),
        }
    }

    /// The given incoming call still ringing, else the newest one.
    pub fn pick_incoming(&self, id: Option<CallId>) -> Result<&CallEntry, PickError> {
        match id {
            Some(id) => {
                let c = self.get(id).ok_or(PickError::NoSuchCall(id))?;
                if c.phase == Phase::Incoming {
                    Ok(c)
                } else {
                    Err(PickError::NoIncoming)
                }
            }
            None => self
                .entries
                .iter()
                .rev()
                .find(|c| c.phase == Phase::Incoming)
                .ok_or(PickError::NoIncoming),
        }
    }

    /// Removes an ended call; the current call moves to the newest call
    /// left (an active one first).
    pub fn remove(&mut self, id: CallId) -> Option<CallEntry> {
        let pos = self.entries.iter().position(|c| c.id == id)?;
        let entry = self.entries.remove(pos);
        if self.current == Some(id) {
            self.current = self
                .entries
                .iter()
                .rev()
                .find(|c| c.phase == Phase::Active && !c.held)
                .or_else(|| self.entries.last())
                .map(|c| c.id);
        }
        Some(entry)
    }

    /// Active calls other than `id` that are not on hold (to hold before
    /// `id` becomes the one we talk in).
    pub fn others_talking(&self, id: CallId) -> Vec<CallId> {
        self.entries
            .iter()
            .filter(|c| c.id != id && c.phase == Phase::Active && !c.held)
            .map(|c| c.id)
            .collect()
    }

    /// The prompt: the current call, its state and duration, else
    /// `idle` (the account and its registration state). The state word
    /// is padded so that the prompt keeps its width while the call goes
    /// from calling to active to on hold (the terminal redraws the
    /// prompt in place, see `term`).
    pub fn prompt(&self, idle: &str, now: Instant) -> String {
        let Some(c) = self.current.and_then(|id| self.get(id)) else {
            return format!("[{idle}]> ");
        };
        let mut s = format!(
            "[#{} {} {:9} {}",
            c.id,
            short_peer(&c.peer),
            c.state_word(),
            clock(c.duration(now))
        );
        if c.muted {
            s.push_str(" muted");
        }
        let others = self.entries.len() - 1;
        if others > 0 {
            s.push_str(&format!(" +{others}"));
        }
        s.push_str("]> ");
        s
    }
}

/// `sip:bob@example.com;transport=udp` → `bob@example.com`.
pub fn short_peer(uri: &str) -> &str {
    let s = uri.trim();
    let s = s
        .strip_prefix("sip:")
        .or_else(|| s.strip_prefix("sips:"))
        .unwrap_or(s);
    s.split([';', '?', '>']).next().unwrap_or(s)
}

/// The caller of an incoming call from its From header value: the
/// display name (if any), the URI without header parameters such as the
/// tag, and the text to show (`"Bob" <sip:bob@example.com>`).
pub fn caller(from: &str) -> (Option<String>, String, String) {
    match crate::sip::header::name_addr::NameAddr::parse(from) {
        Ok(na) => {
            let uri = na.uri.to_string();
            let shown = match &na.display {
                Some(d) if !d.is_empty() => format!("\"{d}\" <{uri}>"),
                _ => uri.clone(),
            };
            (na.display.filter(|d| !d.is_empty()), uri, shown)
        }
        Err(_) => (None, from.to_string(), from.to_string()),
    }
}

/// `mm:ss`, or `h:mm:ss` from an hour on.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{:02}:{:02}", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outgoing_calls_become_current_incoming_only_when_idle() {
        let t0 = Instant::now();
        let mut calls = Calls::default();
        let a = calls.add(0, 7, Direction::Incoming, "sip:carol@example.com", t0);
        assert_eq!(calls.current(), Some(a));
        let b = calls.add(0, 8, Direction::Outgoing, "sip:bob@example.com", t0);
        assert_eq!((a, b), (1, 2));
        assert_eq!(calls.current(), Some(b));
        let c = calls.add(1, 7, Direction::Incoming, "sip:dave@example.com", t0);
        assert_eq!(
            calls.current(),
            Some(b),
            "a new incoming call does not steal it"
        );
        assert_eq!(calls.by_handle(0, 7), Some(a));
        assert_eq!(calls.by_handle(1, 7), Some(c));
        assert_eq!(calls.by_handle(1, 8), None);
    }

    #[test]
    fn picking_calls_by_number_current_or_newest_incoming() {
        let t0 = Instant::now();
        let mut calls = Calls::default();
        assert_eq!(calls.pick(None).unwrap_err(), PickError::NoCall);
        assert_eq!(
            calls.pick_incoming(None).unwrap_err(),
            PickError::NoIncoming
        );
        let a = calls.add(0, 1, Direction::Incoming, "sip:a@x", t0);
        let b = calls.add(0, 2, Direction::Incoming, "sip:b@x", t0);
        assert_eq!(calls.pick_incoming(None).unwrap().id, b);
        assert_eq!(calls.pick_incoming(Some(a)).unwrap().id, a);
        assert_eq!(calls.pick(Some(9)).unwrap_err(), PickError::NoSuchCall(9));
        calls.get_mut(b).unwrap().phase = Phase::Active;
        assert_eq!(calls.pick_incoming(None).unwrap().id, a);
        assert_eq!(
            calls.pick_incoming(Some(b)).unwrap_err(),
            PickError::NoIncoming
        );
        assert_eq!(calls.others_talking(a), vec![b]);
    }

    #[test]
    fn removing_the_current_call_moves_to_an_active_one() {
        let t0 = Instant::now();
        let mut calls = Calls::default();
        let a = calls.add(0, 1, Direction::Outgoing, "sip:a@x", t0);
        calls.get_mut(a).unwrap().phase = Phase::Active;
        let b = calls.add(0, 2, Direction::Incoming, "sip:b@x", t0);
        let c = calls.add(0, 3, Direction::Outgoing, "sip:c@x", t0);
        assert_eq!(calls.current(), Some(c));
        assert_eq!(calls.remove(c).unwrap().handle, 3);
        assert_eq!(calls.current(), Some(a));
        calls.remove(a);
        assert_eq!(calls.current(), Some(b));
        calls.remove(b);
        assert_eq!(calls.current(), None);
        assert!(calls.is_empty());
        assert!(calls.remove(b).is_none());
    }

    #[test]
    fn the_prompt_shows_the_current_call_and_its_duration() {
        let t0 = Instant::now();
        let mut calls = Calls::default();
        assert_eq!(
            calls.prompt("alice@example.com registered", t0),
            "[alice@example.com registered]> "
        );
        let a = calls.add(
            0,
            1,
            Direction::Outgoing,
            "sip:bob@example.com;transport=udp",
            t0,
        );
        assert_eq!(
            calls.prompt("x", t0 + Duration::from_secs(1)),
            "[#1 bob@example.com calling   00:01]> "
        );
        let e = calls.get_mut(a).unwrap();
        e.phase = Phase::Active;
        e.answered = Some(t0 + Duration::from_secs(2));
        let now = t0 + Duration::from_secs(2 + 83);
        assert_eq!(
            calls.prompt("x", now),
            "[#1 bob@example.com active    01:23]> "
        );
        calls.get_mut(a).unwrap().held = true;
        calls.get_mut(a).unwrap().muted = true;
        calls.add(0, 2, Direction::Incoming, "sip:carol@example.com", t0);
        assert_eq!(
            calls.prompt("x", now),
            "[#1 bob@example.com on hold   01:23 muted +1]> "
        );
    }

    #[test]
    fn the_caller_is_shown_with_display_name_and_without_the_tag() {
        assert_eq!(
            caller("\"Bob Smith\" <sip:bob@example.com>;tag=a1"),
            (
                Some("Bob Smith".into()),
                "sip:bob@example.com".into(),
                "\"Bob Smith\" <sip:bob@example.com>".into()
            )
        );
        assert_eq!(
            caller("<sip:carol@127.0.0.1:5070>;tag=x"),
            (
                None,
                "sip:carol@127.0.0.1:5070".into(),
                "sip:carol@127.0.0.1:5070".into()
            )
        );
        assert_eq!(
            caller("garbage <"),
            (None, "garbage <".into(), "garbage <".into())
        );
    }

    #[test]
    fn clock_and_short_peer() {
        assert_eq!(clock(Duration::from_secs(5)), "00:05");
        assert_eq!(clock(Duration::from_secs(3725)), "1:02:05");
        assert_eq!(short_peer("sips:bob@b.example;lr"), "bob@b.example");
        assert_eq!(short_peer("bob"), "bob");
    }
}
