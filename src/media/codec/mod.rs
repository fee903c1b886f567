//! Audio codecs: the [`Encoder`]/[`Decoder`] traits every codec implements,
//! and the codecs themselves (G.711 today, Opus later behind the same traits).
//!
//! Codecs are plain state machines fed one frame at a time by
//! `media::session`; they never allocate on their own except to grow the
//! caller's output buffers.

pub mod g711;

use g711::{G711Decoder, G711Encoder, Law};

/// Turns one frame of 16-bit linear PCM into one RTP payload.
pub trait Encoder: Send {
    /// Encodes `pcm` (one frame at the codec's clock rate) and appends the
    /// payload bytes to `out`.
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>);
}

/// Turns RTP payloads back into 16-bit linear PCM and hides lost frames.
pub trait Decoder: Send {
    /// Decodes one RTP payload and appends the samples to `out`.
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>);

    /// Appends `samples` samples that stand in for a lost frame (packet-loss
    /// concealment); consecutive calls fade towards silence.
    fn conceal(&mut self, samples: usize, out: &mut Vec<i16>);
}

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

    /// A fresh encoder for this codec.
    pub fn new_encoder(self) -> Box<dyn Encoder> {
        match self {
            CodecKind::Pcmu => Box::new(G711Encoder::new(Law::Mu)),
            CodecKind::Pcma => Box::new(G711Encoder::new(Law::A)),
        }
    }

    /// A fresh decoder for this codec.
    pub fn new_decoder(self) -> Box<dyn Decoder> {
        match self {
            CodecKind::Pcmu => Box::new(G711Decoder::new(Law::Mu)),
            CodecKind::Pcma => Box::new(G711Decoder::new(Law::A)),
        }
    }

    /// The static payload type assigned by RFC 3551 §6, if any.
    pub fn static_payload_type(self) -> Option<u8> {
        match self {
            CodecKind::Pcmu => Some(0),
            CodecKind::Pcma => Some(8),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_pick_the_law_of_the_codec_kind() {
        let mut out = Vec::new();
        CodecKind::Pcmu.new_encoder().encode(&[0], &mut out);
        CodecKind::Pcma.new_encoder().encode(&[0], &mut out);
        assert_eq!(out, vec![0xFF, 0xD5]);
        let mut pcm = Vec::new();
        CodecKind::Pcmu.new_decoder().decode(&[0x80], &mut pcm);
        CodecKind::Pcma.new_decoder().decode(&[0xAA], &mut pcm);
        assert_eq!(pcm, vec![32124, 32256]);
    }
}
