//! Events for people and for scripts: one line each on stdout, plain text
//! or (with `--json`) one JSON object per line.

use std::io::Write;

use serde_json::{Map, Value, json};

use crate::media::codec::CodecKind;
use crate::media::session::MediaStats;
use crate::sdp::NegotiatedMedia;
use crate::ua::EndReason;

/// Prints events.
#[derive(Debug, Clone, Copy)]
pub struct Emitter {
    pub json: bool,
}

impl Emitter {
    /// Prints `event` with `fields` (a JSON object) and its human text.
    pub fn emit(&self, event: &str, fields: Value, human: &str) {
        let mut out = std::io::stdout().lock();
        let line = if self.json {
            let mut obj = Map::new();
            obj.insert("event".into(), Value::String(event.into()));
            if let Value::Object(m) = fields {
                obj.extend(m);
            }
            Value::Object(obj).to_string()
        } else {
            human.to_string()
        };
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }

    pub fn media(&self, call: u64, m: &NegotiatedMedia) {
        let remote = m.remote_rtp.map(|a| a.to_string());
        self.emit(
            "media",
            json!({"call": call, "codec": m.codec.encoding_name(), "payload_type": m.payload_type,
                   "remote_rtp": remote, "direction": m.direction.attribute(),
                   "telephone_event": m.telephone_event}),
            &format!(
                "media: {} (PT {}) to {}, {}",
                m.codec.encoding_name(),
                m.payload_type,
                remote.as_deref().unwrap_or("nowhere (on hold)"),
                m.direction.attribute()
            ),
        );
    }

    pub fn ended(
        &self,
        call: u64,
        reason: &EndReason,
        stats: Option<&MediaStats>,
        codec: Option<CodecKind>,
        duration_s: Option<f64>,
    ) {
        let human_reason = describe_end(reason);
        let mut human = format!("call ended: {human_reason}");
        if let Some(d) = duration_s {
            human.push_str(&format!(" after {d:.1} s"));
        }
        if let Some(s) = stats {
            human.push_str(&format!(
                "\n  media: {} sent {} packets, received {}, lost {}, late {}, jitter {:.1} ms",
                codec.map(|c| c.encoding_name()).unwrap_or("-"),
                s.packets_sent,
                s.packets_received,
                s.packets_lost,
                s.late,
                s.jitter_ms
            ));
        }
        self.emit(
            "ended",
            json!({"call": call, "reason": reason, "duration_s": duration_s,
                   "codec": codec.map(|c| c.encoding_name()), "media": stats}),
            &human,
        );
    }
}

/// A received DTMF digit.
pub fn emit_dtmf(emit: &Emitter, call: u64, digit: char) {
    emit.emit(
        "dtmf",
        json!({"call": call, "digit": digit.to_string()}),
        &format!("DTMF {digit}"),
    );
}

/// A short human description of why a call ended.
pub fn describe_end(reason: &EndReason) -> String {
    match reason {
        EndReason::LocalHangup => "we hung up".into(),
        EndReason::RemoteHangup => "the peer hung up".into(),
        EndReason::Cancelled => "cancelled before the answer".into(),
        EndReason::RemoteCancelled => "the caller cancelled".into(),
        EndReason::Rejected { status, reason } => format!("{status} {reason}"),
        EndReason::LocalReject { status } => format!("refused with {status}"),
        EndReason::Timeout => "no response (timeout)".into(),
        EndReason::NoAck => "our answer was never acknowledged".into(),
        EndReason::TransportError => "network error".into(),
        EndReason::MediaFailure { detail } => format!("unusable media: {detail}"),
        EndReason::MediaTimeout => "no audio from the peer (RTP timeout)".into(),
    }
}
