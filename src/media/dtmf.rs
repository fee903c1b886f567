//! DTMF digits as RTP telephone-events (RFC 4733), sans-IO.
//!
//! [`DtmfSender`] turns queued digits into event payloads, one per 20 ms
//! frame while a digit lasts, then the end packet three times (RFC 4733
//! §2.5.1.4); [`DtmfReceiver`] reports each received event once.

use std::collections::VecDeque;

/// How long each digit lasts.
pub const DIGIT_MS: u32 = 100;
/// Silence between two digits.
pub const GAP_MS: u32 = 60;
/// Volume field: -10 dBm0 (RFC 4733 §2.3.4).
const VOLUME: u8 = 10;

/// A character that is not a DTMF digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{digit:?} is not a DTMF digit (0-9, *, #, A-D)")]
pub struct BadDigit {
    pub digit: char,
}

/// RFC 4733 §3.2: events 0–9, * = 10, # = 11, A–D = 12–15.
pub fn digit_to_event(c: char) -> Option<u8> {
    match c.to_ascii_uppercase() {
        d @ '0'..='9' => Some(d as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        d @ 'A'..='D' => Some(d as u8 - b'A' + 12),
        _ => None,
    }
}

/// The digit of an event code, if it is one.
pub fn event_to_digit(e: u8) -> Option<char> {
    match e {
        0..=9 => Some((b'0' + e) as char),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some((b'A' + e - 12) as char),
        _ => None,
    }
}

/// One telephone-event payload (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub code: u8,
    pub end: bool,
    pub volume: u8,
    /// In timestamp units since the event's start.
    pub duration: u16,
}

impl Event {
    pub fn encode(self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.code,
            (u8::from(self.end) << 7) | (self.volume & 0x3f),
            d[0],
            d[1],
        ]
    }

    pub fn decode(payload: &[u8]) -> Option<Event> {
        let p: &[u8; 4] = payload.get(..4)?.try_into().ok()?;
        Some(Event {
            code: p[0],
            end: p[1] & 0x80 != 0,
            volume: p[1] & 0x3f,
            duration: u16::from_be_bytes([p[2], p[3]]),
        })
    }
}

/// An event packet to send: payload, the event's start timestamp and the
/// marker bit (set on the first packet of an event, RFC 4733 §2.5.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPacket {
    pub payload: [u8; 4],
    pub timestamp: u32,
    pub marker: bool,
}

#[derive(Debug, Clone)]
struct Active {
    code: u8,
    start: u32,
    elapsed: u32,
    ends_sent: u8,
}

/// Sends queued digits, frame by frame.
#[derive(Debug, Clone, Default)]
pub struct DtmfSender {
    queue: VecDeque<u8>,
    active: Option<Active>,
    /// Samples of silence still due before the next digit.
    gap: u32,
}

impl DtmfSender {
    /// Queues digits; nothing is queued when one of them is not a digit.
    pub fn queue(&mut self, digits: &str) -> Result<(), BadDigit> {
        let codes: Vec<u8> = digits
            .chars()
            .map(|c| digit_to_event(c).ok_or(BadDigit { digit: c }))
            .collect::<Result<_, _>>()?;
        self.queue.extend(codes);
        Ok(())
    }

    /// Whether an event is being sent (audio must pause).
    pub fn is_sending(&self) -> bool {
        self.active.is_some()
    }

    /// The event packets for the frame of `frame` samples starting at
    /// `timestamp` (the audio clock), at `clock` Hz. Empty when no event is
    /// due: audio goes out as usual.
    pub fn next_frame(&mut self, timestamp: u32, frame: u32, clock: u32) -> Vec<EventPacket> {
        if self.active.is_none() {
            if self.gap > 0 {
                self.gap = self.gap.saturating_sub(frame);
                return Vec::new();
            }
            let Some(code) = self.queue.pop_front() else {
                return Vec::new();
            };
            self.active = Some(Active {
                code,
                start: timestamp,
                elapsed: 0,
                ends_sent: 0,
            });
        }
        let digit_len = clock * DIGIT_MS / 1000;
        let a = self.active.as_mut().expect("set above");
        let marker = a.elapsed == 0;
        a.elapsed = (a.elapsed + frame).min(digit_len);
        let end = a.elapsed >= digit_len;
        let event = Event {
            code: a.code,
            end,
            volume: VOLUME,
            duration: a.elapsed.min(u32::from(u16::MAX)) as u16,
        };
        let packet = EventPacket {
            payload: event.encode(),
            timestamp: a.start,
            marker,
        };
        if !end {
            return vec![packet];
        }
        // RFC 4733 §2.5.1.4: the end packet is sent three times.
        a.ends_sent += 1;
        if a.ends_sent >= 3 {
            self.active = None;
            self.gap = clock * GAP_MS / 1000;
        }
        vec![EventPacket {
            marker: false,
            ..packet
        }]
    }
}

/// Reports each received event once, at its first packet.
#[derive(Debug, Clone, Default)]
pub struct DtmfReceiver {
    /// (SSRC, start timestamp) of the last event reported.
    last: Option<(u32, u32)>,
    digits: VecDeque<char>,
}

impl DtmfReceiver {
    /// One telephone-event RTP packet (RFC 4733 §2.5.2.1: packets with the
    /// same timestamp belong to the same event).
    pub fn push(&mut self, ssrc: u32, timestamp: u32, payload: &[u8]) {
        let Some(event) = Event::decode(payload) else {
            return;
        };
        if self.last == Some((ssrc, timestamp)) {
            return;
        }
        self.last = Some((ssrc, timestamp));
        if let Some(d) = event_to_digit(event.code) {
            self.digits.push_back(d);
        }
    }

    pub fn poll(&mut self) -> Option<char> {
        self.digits.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_map_to_rfc4733_event_codes() {
        let codes: Vec<u8> = "0189*#AD".chars().filter_map(digit_to_event).collect();
        assert_eq!(codes, vec![0, 1, 8, 9, 10, 11, 12, 15]);
        assert_eq!(event_to_digit(11), Some('#'));
        assert_eq!(digit_to_event('x'), None);
    }

    #[test]
    fn payload_layout_rfc4733_2_3() {
        let e = Event {
            code: 5,
            end: true,
            volume: 10,
            duration: 800,
        };
        assert_eq!(e.encode(), [5, 0x8a, 0x03, 0x20]);
        assert_eq!(Event::decode(&e.encode()), Some(e));
        assert_eq!(Event::decode(&[1, 2]), None);
    }

    #[test]
    fn a_digit_is_100ms_then_three_end_packets_then_a_gap() {
        let mut s = DtmfSender::default();
        s.queue("1#").unwrap();
        let mut ts = 1000u32;
        let mut packets = Vec::new();
        for _ in 0..30 {
            for p in s.next_frame(ts, 160, 8000) {
                packets.push(p);
            }
            ts += 160;
        }
        let events: Vec<Event> = packets
            .iter()
            .map(|p| Event::decode(&p.payload).unwrap())
            .collect();
        // Digit 1: 160, 320, 480, 640 ms-units, then 800 with E three times.
        let first: Vec<_> = events
            .iter()
            .take(7)
            .map(|e| (e.code, e.end, e.duration))
            .collect();
        assert_eq!(
            first,
            vec![
                (1, false, 160),
                (1, false, 320),
                (1, false, 480),
                (1, false, 640),
                (1, true, 800),
                (1, true, 800),
                (1, true, 800)
            ]
        );
        assert!(packets[0].marker && !packets[1].marker);
        assert!(
            packets[..7].iter().all(|p| p.timestamp == 1000),
            "one timestamp per event"
        );
        // Then '#' after the gap, with a later timestamp.
        assert_eq!(events[7].code, 11);
        assert!(packets[7].marker && packets[7].timestamp > 1000 + 800);
        assert_eq!(events.len(), 14);
        assert!(!s.is_sending());
    }

    #[test]
    fn bad_digits_are_refused_whole() {
        let mut s = DtmfSender::default();
        assert_eq!(s.queue("12x"), Err(BadDigit { digit: 'x' }));
        assert!(s.next_frame(0, 160, 8000).is_empty());
    }

    #[test]
    fn receiver_reports_each_event_once() {
        let mut r = DtmfReceiver::default();
        let p = |code, end, d| {
            Event {
                code,
                end,
                volume: 10,
                duration: d,
            }
            .encode()
        };
        for (ts, payload) in [
            (100, p(9, false, 160)),
            (100, p(9, false, 320)),
            (100, p(9, true, 800)),
            (100, p(9, true, 800)),
            (2000, p(11, false, 160)),
        ] {
            r.push(7, ts, &payload);
        }
        assert_eq!(r.poll(), Some('9'));
        assert_eq!(r.poll(), Some('#'));
        assert_eq!(r.poll(), None);
    }
}
