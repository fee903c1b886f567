//! Audio codecs: the [`Encoder`]/[`Decoder`] traits every codec implements,
//! and the codecs themselves: G.711 ([`g711`]) and Opus ([`opus`]).
//!
//! Codecs are plain state machines fed one frame at a time by
//! `media::session`; they never allocate on their own except to grow the
//! caller's output buffers.

pub mod g711;
pub mod opus;

use g711::{G711Decoder, G711Encoder, Law};
use opus::{OpusConfig, OpusDecoder, OpusEncoder, OpusError};

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

    /// Recovers a lost frame of `samples` samples from the payload of the
    /// packet that follows it (in-band FEC, RFC 6716 §2.1.7) and appends it;
    /// false, with nothing appended, when the codec or the packet cannot
    /// (the caller conceals then). The next packet is still decoded
    /// normally afterwards.
    fn recover_from_next(
        &mut self,
        next_payload: &[u8],
        samples: usize,
        out: &mut Vec<i16>,
    ) -> bool {
        let _ = (next_payload, samples, out);
        false
    }
}

/// The audio codecs sipline can encode and decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodecKind {
    /// ITU-T G.711 μ-law, static payload type 0 (RFC 3551 §4.5.14).
    Pcmu,
    /// ITU-T G.711 A-law, static payload type 8 (RFC 3551 §4.5.14).
    Pcma,
    /// Opus (RFC 6716), dynamic payload type, `opus/48000/2` (RFC 7587 §7).
    Opus,
}

impl CodecKind {
    /// The encoding name used in `a=rtpmap` (RFC 3551 §6).
    pub fn encoding_name(self) -> &'static str {
        match self {
            CodecKind::Pcmu => "PCMU",
            CodecKind::Pcma => "PCMA",
            CodecKind::Opus => "opus",
        }
    }

    /// Channels written in `a=rtpmap`: Opus is always `/2` (RFC 7587 §7),
    /// whatever is sent; G.711 has none (mono, RFC 4566 §6).
    pub fn rtpmap_channels(self) -> Option<u32> {
        match self {
            CodecKind::Opus => Some(2),
            CodecKind::Pcmu | CodecKind::Pcma => None,
        }
    }

    /// RTP clock rate in Hz (RFC 3551 §4.5.14: 8000 for G.711; RFC 7587
    /// §4.1: 48000 for Opus whatever its audio bandwidth).
    pub fn clock_rate(self) -> u32 {
        match self {
            CodecKind::Pcmu | CodecKind::Pcma => 8000,
            CodecKind::Opus => opus::OPUS_RATE,
        }
    }

    /// Sample rate of the PCM the encoder takes and the decoder gives. It
    /// equals the RTP clock rate for every codec we have (Opus runs at
    /// 48 kHz internally), but it is a property of the codec's audio, not of
    /// the RTP timestamps, nor of the sound card.
    pub fn pcm_rate(self) -> u32 {
        match self {
            CodecKind::Pcmu | CodecKind::Pcma => 8000,
            CodecKind::Opus => opus::OPUS_RATE,
        }
    }

    /// A fresh encoder for this codec with default settings.
    pub fn new_encoder(self) -> Box<dyn Encoder> {
        self.encoder_with(&OpusConfig::default())
            .expect("the default Opus settings are valid")
    }

    /// A fresh encoder; `opus` applies to Opus only.
    pub fn encoder_with(self, opus: &OpusConfig) -> Result<Box<dyn Encoder>, OpusError> {
        Ok(match self {
            CodecKind::Pcmu => Box::new(G711Encoder::new(Law::Mu)),
            CodecKind::Pcma => Box::new(G711Encoder::new(Law::A)),
            CodecKind::Opus => Box::new(OpusEncoder::new(opus)?),
        })
    }

    /// A fresh decoder for this codec.
    pub fn new_decoder(self) -> Box<dyn Decoder> {
        self.decoder()
            .expect("libopus creates a mono 48 kHz decoder")
    }

    /// A fresh decoder, or why libopus could not make one.
    pub fn decoder(self) -> Result<Box<dyn Decoder>, OpusError> {
        Ok(match self {
            CodecKind::Pcmu => Box::new(G711Decoder::new(Law::Mu)),
            CodecKind::Pcma => Box::new(G711Decoder::new(Law::A)),
            CodecKind::Opus => Box::new(OpusDecoder::new()?),
        })
    }

    /// The static payload type assigned by RFC 3551 §6, if any.
    pub fn static_payload_type(self) -> Option<u8> {
        match self {
            CodecKind::Pcmu => Some(0),
            CodecKind::Pcma => Some(8),
            CodecKind::Opus => None,
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

    #[test]
    fn opus_clock_and_pcm_rates_are_48k_and_g711_keeps_the_default_fec_hook() {
        assert_eq!(CodecKind::Opus.clock_rate(), 48000);
        assert_eq!(CodecKind::Opus.pcm_rate(), 48000);
        assert_eq!(CodecKind::Pcmu.pcm_rate(), 8000);
        assert_eq!(CodecKind::Opus.static_payload_type(), None);
        let mut out = Vec::new();
        assert!(
            !CodecKind::Pcmu
                .new_decoder()
                .recover_from_next(&[0xFF; 160], 160, &mut out)
        );
        assert!(out.is_empty());
        let mut payload = Vec::new();
        CodecKind::Opus
            .new_encoder()
            .encode(&[0; 960], &mut payload);
        assert!(!payload.is_empty());
    }
}
