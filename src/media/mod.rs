//! Media: RTP sessions, codecs, the jitter buffer and audio I/O.
//!
//! Everything here except `audio` is sans-IO.

pub mod audio;
pub mod codec;
pub mod dtmf;
pub mod jitter;
pub mod keepalive;
pub mod latch;
pub mod netem;
pub mod quality;
pub mod rtcp;
pub mod rtp;
pub mod session;
pub mod signal;
