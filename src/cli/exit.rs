//! Process exit codes (documented in README.md).

use crate::ua::EndReason;

/// What the process tells its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The call was answered and ended normally.
    Ok = 0,
    /// An unexpected internal error.
    Internal = 1,
    /// Bad command line (clap's own code).
    Usage = 2,
    /// The callee was busy (486 Busy Here, 600 Busy Everywhere).
    Busy = 3,
    /// Declined or failed: any other final 4xx–6xx, or an unusable answer.
    Failed = 4,
    /// No answer: no final response in time (Timer B), 408, 480, or the
    /// `--timeout` ring timer.
    NoAnswer = 5,
    /// Network error: cannot bind, resolve or send.
    Network = 6,
    /// Audio error: an unreadable WAV, a missing named device, a failed
    /// recording.
    Audio = 7,
    /// `loopback`: the received audio did not match what was sent, or the
    /// estimated MOS is below `--min-mos`.
    CheckFailed = 8,
    /// Authentication failed: the registrar or proxy refused our
    /// credentials, or no password could be read.
    AuthFailed = 9,
    /// A phone script (`-e` or piped commands): `wait-for` timed out.
    WaitTimeout = 10,
    /// Interrupted (Ctrl-C/SIGTERM) before the call was answered.
    Interrupted = 130,
}

impl Exit {
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The exit code for how an outgoing call ended.
    pub fn for_end(reason: &EndReason, interrupted: bool, ring_timeout: bool) -> Exit {
        match reason {
            // We hung up; an unanswered BYE does not make the call fail.
            EndReason::LocalHangup | EndReason::RemoteHangup | EndReason::ByeTimeout => Exit::Ok,
            EndReason::Cancelled if ring_timeout => Exit::NoAnswer,
            EndReason::Cancelled if interrupted => Exit::Interrupted,
            EndReason::Cancelled => Exit::NoAnswer,
            EndReason::Rejected { status, .. } => match status {
                486 | 600 => Exit::Busy,
                408 | 480 => Exit::NoAnswer,
                _ => Exit::Failed,
            },
            EndReason::Timeout | EndReason::NoFinalResponse { .. } => Exit::NoAnswer,
            EndReason::TransportError | EndReason::MediaTimeout => Exit::Network,
            EndReason::MediaFailure { .. } | EndReason::NoAck => Exit::Failed,
            EndReason::RemoteCancelled | EndReason::LocalReject { .. } => Exit::Failed,
        }
    }
}
