//! Events for people and for scripts: one line each on stdout, plain text
//! or (with `--json`) one JSON object per line. The statistics of a call
//! that ends are also printed for people, as one block on stderr.

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
        let remote_rtcp = m.remote_rtcp.map(|a| a.to_string());
        self.emit(
            "media",
            json!({"call": call, "codec": m.codec.encoding_name(), "payload_type": m.payload_type,
                   "remote_rtp": remote, "remote_rtcp": remote_rtcp, "rtcp_mux": m.rtcp_mux,
                   "direction": m.direction.attribute(),
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
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "{}", stats_block(call, codec, s));
            let _ = err.flush();
        }
        self.emit(
            "ended",
            json!({"call": call, "reason": reason, "duration_s": duration_s,
                   "codec": codec.map(|c| c.encoding_name()), "media": stats}),
            &human,
        );
    }
}

/// The statistics of a call for people: counters, loss and jitter both
/// ways, round-trip time, buffering and the E-model estimate.
pub fn stats_block(call: u64, codec: Option<CodecKind>, s: &MediaStats) -> String {
    let percent = |lost: i64, of: u64| {
        if of == 0 {
            0.0
        } else {
            lost.max(0) as f64 * 100.0 / of as f64
        }
    };
    // The same count as `packets_lost` in the JSON events (RFC 3550 §A.3
    // over every packet of the stream, telephone-events included).
    let lost = s.packets_lost as i64;
    let expected = (s.packets_received + s.packets_lost) as i64;
    let mut out = format!(
        "call {call} statistics:\n  {}: sent {} packets, received {}, lost {lost} ({:.1} %), late {}, concealed {} frames\n",
        codec.map(|c| c.encoding_name()).unwrap_or("-"),
        s.packets_sent,
        s.packets_received,
        percent(lost, expected.max(0) as u64),
        s.late,
        s.concealed_frames,
    );
    let rtt = s
        .rtcp
        .rtt_ms
        .map_or("unknown".to_string(), |r| format!("{r:.2} ms"));
    out.push_str(&format!(
        "  jitter {:.1} ms, RTT {rtt}, jitter buffer {:.0} ms (target {:.0} ms)",
        s.jitter_ms, s.jitter_buffer_ms, s.jitter_target_ms
    ));
    match &s.rtcp.remote {
        Some(r) => out.push_str(&format!(
            "; the peer reports lost {} ({:.1} % lately), jitter {:.1} ms\n",
            r.cumulative_lost,
            r.fraction_lost * 100.0,
            r.jitter_ms
        )),
        None => out.push_str("; no report from the peer\n"),
    }
    let estimate = match &s.quality {
        Some(q) => format!(
            "estimated MOS {:.2} (ITU-T G.107 R {:.1}, one-way delay {:.0} ms, loss {:.1} %)",
            q.mos, q.r_factor, q.one_way_delay_ms, q.loss_percent
        ),
        None => "no audio received, no MOS estimate".to_string(),
    };
    out.push_str(&format!(
        "  {estimate}; RTCP {} sent, {} received\n",
        s.rtcp.reports_sent, s.rtcp.reports_received
    ));
    out
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
        EndReason::NoFinalResponse { status } => {
            format!("no final answer within the ring timeout (last response {status})")
        }
        EndReason::NoAck => "our answer was never acknowledged".into(),
        EndReason::TransportError => "network error".into(),
        EndReason::MediaFailure { detail } => format!("unusable media: {detail}"),
        EndReason::MediaTimeout => "no audio from the peer (RTP timeout)".into(),
        EndReason::ByeTimeout => "we hung up; BYE not answered".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtcp::{ReceptionSummary, RtcpStats};
    use crate::media::session::CallQuality;

    #[test]
    fn statistics_block_shows_counts_loss_rtt_peer_view_and_mos() {
        let stats = MediaStats {
            packets_sent: 150,
            packets_received: 147,
            packets_lost: 3,
            late: 1,
            concealed_frames: 4,
            jitter_ms: 2.25,
            jitter_buffer_ms: 60.0,
            jitter_target_ms: 40.0,
            rtcp: RtcpStats {
                reports_sent: 6,
                reports_received: 5,
                rtt_ms: Some(12.5),
                // What we report over RTCP may lag behind the live count;
                // the block shows the count of the JSON events.
                local: Some(ReceptionSummary {
                    fraction_lost: 0.0,
                    cumulative_lost: 2,
                    highest_seq: 149,
                    jitter_ms: 2.25,
                }),
                remote: Some(ReceptionSummary {
                    fraction_lost: 0.25,
                    cumulative_lost: 7,
                    highest_seq: 1000,
                    jitter_ms: 1.5,
                }),
                ..Default::default()
            },
            quality: Some(CallQuality {
                mos: 4.123,
                r_factor: 81.04,
                one_way_delay_ms: 86.25,
                loss_percent: 2.7,
            }),
            ..Default::default()
        };
        let block = stats_block(3, Some(CodecKind::Pcma), &stats);
        assert_eq!(
            block,
            "call 3 statistics:\n  \
             PCMA: sent 150 packets, received 147, lost 3 (2.0 %), late 1, concealed 4 frames\n  \
             jitter 2.2 ms, RTT 12.50 ms, jitter buffer 60 ms (target 40 ms); the peer reports lost 7 (25.0 % lately), jitter 1.5 ms\n  \
             estimated MOS 4.12 (ITU-T G.107 R 81.0, one-way delay 86 ms, loss 2.7 %); RTCP 6 sent, 5 received\n"
        );
        let bare = stats_block(1, None, &MediaStats::default());
        assert!(bare.contains("RTT unknown") && bare.contains("no report from the peer"));
        assert!(bare.contains("no audio received, no MOS estimate"));
    }
}
