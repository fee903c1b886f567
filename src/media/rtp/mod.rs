//! RTP (RFC 3550) for the audio session: demultiplexing of the datagrams that
//! share the media socket, a panic-free parser for received packets, and the
//! sender that stamps SSRC, sequence numbers and timestamps on outgoing ones.
//!
//! Sans-IO: callers hand in datagrams and get bytes back; randomness comes
//! from an RNG they pass in.

mod demux;
mod packet;
mod sender;

pub use demux::{Kind, classify};
pub use packet::{RtpError, RtpPacket};
pub use sender::RtpSender;
