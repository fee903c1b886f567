//! Audio codecs.

/// The audio codecs sipline can encode and decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodecKind {
    /// ITU-T G.711 μ-law, static payload type 0 (RFC 3551 §4.5.14).
    Pcmu,
    /// ITU-T G.711 A-law, static payload type 8 (RFC 3551 §4.5.14).
    Pcma,
}

impl CodecKind {
    /// The encoding name used in `a=rtpmap` (RFC 3551 §6).
    pub fn encoding_name(self) -> &'static str {
        match self {
            CodecKind::Pcmu => "PCMU",
            CodecKind::Pcma => "PCMA",
        }
    }

    /// RTP clock rate in Hz.
    pub fn clock_rate(self) -> u32 {
        8000
    }

    /// The static payload type assigned by RFC 3551 §6, if any.
    pub fn static_payload_type(self) -> Option<u8> {
        match self {
            CodecKind::Pcmu => Some(0),
            CodecKind::Pcma => Some(8),
        }
    }
}
