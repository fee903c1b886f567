//! ITU-T G.711 μ-law and A-law companding of 16-bit linear PCM, plus the
//! [`Encoder`]/[`Decoder`] implementations used for PCMU and PCMA
//! (RFC 3551 §4.5.14).
//!
//! Pure functions over samples; the codec structs only keep the last decoded
//! frame for packet-loss concealment. Driven by `media::session` once per frame.
//!
//! Both laws are written from the G.711 segment/quantization description:
//! the magnitude falls into one of eight segments (chords) whose step size
//! doubles from one segment to the next, and four bits select the step
//! inside the segment. Decoding returns the middle of the quantization
//! interval, so `encode(decode(code)) == code` for every code except
//! μ-law `0x7F` ("negative zero", which decodes to 0 and encodes as `0xFF`).

use super::{Decoder, Encoder};

/// μ-law bias added to the magnitude before segment search (G.711 §3.2: the
/// μ-law characteristic is offset by 33 in 14-bit units, 132 in 16-bit units).
const ULAW_BIAS: i32 = 0x84;
/// Largest magnitude that still fits in segment 7 once biased (0x7FFF − bias).
const ULAW_CLIP: i32 = 0x7FFF - ULAW_BIAS;

/// Encodes one 16-bit linear sample as G.711 μ-law (ITU-T G.711 Table 2a).
pub fn linear_to_ulaw(pcm: i16) -> u8 {
    let value = i32::from(pcm);
    let (sign, magnitude) = if value < 0 {
        (0x80, -value)
    } else {
        (0x00, value)
    };
    let biased = magnitude.min(ULAW_CLIP) + ULAW_BIAS;
    // `biased` lies in 0x84..=0x7FFF: its top set bit is bit 7..=14, which
    // numbers the segment 0..=7.
    let segment = (31 - biased.leading_zeros() as i32) - 7;
    let step_index = (biased >> (segment + 3)) & 0x0F;
    // G.711 transmits μ-law code words with all bits inverted.
    !((sign | (segment << 4) | step_index) as u8)
}

/// Decodes one G.711 μ-law code word to 16-bit linear PCM (ITU-T G.711 Table 2a).
pub fn ulaw_to_linear(code: u8) -> i16 {
    let code = !code;
    let segment = i32::from((code >> 4) & 0x07);
    let step_index = i32::from(code & 0x0F);
    // Middle of the interval: (step·8 + 4 + bias) · 2^segment − bias.
    let magnitude = (((step_index << 3) + ULAW_BIAS) << segment) - ULAW_BIAS;
    let value = if code & 0x80 != 0 {
        -magnitude
    } else {
        magnitude
    };
    // |value| <= 32124 by construction.
    value as i16
}

/// A-law code words are transmitted with the even bits inverted (G.711 §3.3).
const ALAW_EVEN_BITS: u8 = 0x55;

/// Encodes one 16-bit linear sample as G.711 A-law (ITU-T G.711 Table 1a).
pub fn linear_to_alaw(pcm: i16) -> u8 {
    // A-law works on 13-bit samples; negative values use one's complement so
    // that the characteristic is symmetric around zero (no code for 0).
    let value = i32::from(pcm) >> 3;
    let (sign, magnitude) = if value >= 0 {
        (0x80, value)
    } else {
        (0x00, -value - 1)
    };
    let (segment, step_index) = if magnitude < 32 {
        (0, magnitude >> 1)
    } else {
        // magnitude in 32..=4095: top set bit 5..=11 gives segment 1..=7.
        let segment = (31 - magnitude.leading_zeros() as i32) - 4;
        (segment, (magnitude >> segment) & 0x0F)
    };
    (sign | (segment << 4) | step_index) as u8 ^ ALAW_EVEN_BITS
}

/// Decodes one G.711 A-law code word to 16-bit linear PCM (ITU-T G.711 Table 1a).
pub fn alaw_to_linear(code: u8) -> i16 {
    let code = code ^ ALAW_EVEN_BITS;
    let segment = i32::from((code >> 4) & 0x07);
    let step_index = i32::from(code & 0x0F);
    // Middle of the interval, scaled from 13 to 16 bits.
    let magnitude = if segment == 0 {
        (step_index << 4) + 8
    } else {
        ((step_index << 4) + 0x108) << (segment - 1)
    };
    let value = if code & 0x80 != 0 {
        magnitude
    } else {
        -magnitude
    };
    // |value| <= 32256 by construction.
    value as i16
}

/// Which G.711 companding law a codec instance uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    /// μ-law (PCMU), used in North America and Japan.
    Mu,
    /// A-law (PCMA), used elsewhere.
    A,
}

impl Law {
    fn compress(self, pcm: i16) -> u8 {
        match self {
            Law::Mu => linear_to_ulaw(pcm),
            Law::A => linear_to_alaw(pcm),
        }
    }

    fn expand(self, code: u8) -> i16 {
        match self {
            Law::Mu => ulaw_to_linear(code),
            Law::A => alaw_to_linear(code),
        }
    }
}

/// G.711 encoder: one byte per sample.
#[derive(Debug, Clone)]
pub struct G711Encoder {
    law: Law,
}

impl G711Encoder {
    /// An encoder for the given law.
    pub fn new(law: Law) -> Self {
        G711Encoder { law }
    }
}

impl Encoder for G711Encoder {
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) {
        out.extend(pcm.iter().map(|&s| self.law.compress(s)));
    }
}

/// Gain of the first concealed frame; each further lost frame lowers the gain
/// by the same amount until the output is silent.
const CONCEAL_GAIN_STEP: f32 = 0.25;

/// G.711 decoder with a simple packet-loss concealment: the last good frame
/// is repeated with a gain that falls by a quarter per lost
/// frame (ramped sample by sample), reaching silence after four frames.
#[derive(Debug, Clone)]
pub struct G711Decoder {
    law: Law,
    /// The last frame decoded from a real packet.
    last_frame: Vec<i16>,
    /// Consecutive frames concealed since the last real packet.
    concealed: u32,
}

impl G711Decoder {
    /// A decoder for the given law.
    pub fn new(law: Law) -> Self {
        G711Decoder {
            law,
            last_frame: Vec::new(),
            concealed: 0,
        }
    }

    fn gain_after(concealed: u32) -> f32 {
        (1.0 - CONCEAL_GAIN_STEP * concealed as f32).max(0.0)
    }
}

impl Decoder for G711Decoder {
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) {
        let start = out.len();
        out.extend(payload.iter().map(|&c| self.law.expand(c)));
        self.last_frame.clear();
        self.last_frame.extend_from_slice(&out[start..]);
        self.concealed = 0;
    }

    fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) {
        let from = Self::gain_after(self.concealed);
        self.concealed = self.concealed.saturating_add(1);
        let to = Self::gain_after(self.concealed);
        if self.last_frame.is_empty() || from == 0.0 {
            out.extend(std::iter::repeat_n(0, samples));
            return;
        }
        let len = self.last_frame.len();
        out.extend((0..samples).map(|i| {
            let gain = from + (to - from) * (i as f32 / samples as f32);
            (f32::from(self.last_frame[i % len]) * gain) as i16
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_encodes_known_vectors() {
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_ulaw(-1), 0x7F);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        // First step of segment 0 is 8 wide, decoded at its middle.
        assert_eq!(ulaw_to_linear(0xFE), 8);
    }

    #[test]
    fn alaw_encodes_known_vectors() {
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
    }

    #[test]
    fn ulaw_every_code_survives_decode_then_encode() {
        for code in 0..=255u8 {
            let expected = if code == 0x7F { 0xFF } else { code };
            assert_eq!(
                linear_to_ulaw(ulaw_to_linear(code)),
                expected,
                "code {code:#04x}"
            );
        }
    }

    #[test]
    fn alaw_every_code_survives_decode_then_encode() {
        for code in 0..=255u8 {
            assert_eq!(
                linear_to_alaw(alaw_to_linear(code)),
                code,
                "code {code:#04x}"
            );
        }
    }

    #[test]
    fn ulaw_round_trip_error_is_within_half_a_step_for_all_samples() {
        for pcm in i16::MIN..=i16::MAX {
            let x = i32::from(pcm);
            let err = (x - i32::from(ulaw_to_linear(linear_to_ulaw(pcm)))).abs();
            if x.abs() <= ULAW_CLIP {
                // Half a step of the segment: (|x| + bias) / 32, at least 4.
                assert!(err * 32 <= x.abs() + ULAW_BIAS, "pcm {pcm} err {err}");
            } else {
                assert!(err <= 32768 - 32124, "pcm {pcm} err {err}");
            }
        }
    }

    #[test]
    fn alaw_round_trip_error_is_within_half_a_step_for_all_samples() {
        for pcm in i16::MIN..=i16::MAX {
            let x = i32::from(pcm);
            let err = (x - i32::from(alaw_to_linear(linear_to_alaw(pcm)))).abs();
            // Segments 0 and 1 are 16 wide (half: 8); above, half a step is |x|/32.
            assert!(err <= 8 || err * 32 <= x.abs() + 8, "pcm {pcm} err {err}");
        }
    }

    #[test]
    fn ulaw_and_alaw_are_monotonic() {
        let mut prev_u = i16::MIN;
        let mut prev_a = i16::MIN;
        for pcm in i16::MIN..=i16::MAX {
            let u = ulaw_to_linear(linear_to_ulaw(pcm));
            let a = alaw_to_linear(linear_to_alaw(pcm));
            assert!(u >= prev_u && a >= prev_a, "pcm {pcm}");
            prev_u = u;
            prev_a = a;
        }
    }

    #[test]
    fn encoder_and_decoder_append_one_sample_per_byte() {
        let mut enc = G711Encoder::new(Law::A);
        let mut dec = G711Decoder::new(Law::A);
        let pcm: Vec<i16> = (0..160).map(|i| (i * 100) as i16).collect();
        let mut bytes = vec![0xAB];
        enc.encode(&pcm, &mut bytes);
        assert_eq!(bytes.len(), 161);
        let mut out = vec![7];
        dec.decode(&bytes[1..], &mut out);
        assert_eq!(out.len(), 161);
        assert_eq!(out[0], 7);
    }

    #[test]
    fn concealment_repeats_last_frame_attenuated_then_fades_to_silence() {
        let mut dec = G711Decoder::new(Law::Mu);
        let frame = [linear_to_ulaw(10000); 160];
        let mut out = Vec::new();
        dec.decode(&frame, &mut out);
        let level = |s: &[i16]| s.iter().map(|&x| i32::from(x).abs()).max().unwrap_or(0);
        let original = level(&out);
        let mut previous = original;
        for _ in 0..4 {
            let mut concealed = Vec::new();
            dec.conceal(160, &mut concealed);
            assert_eq!(concealed.len(), 160);
            let now = level(&concealed);
            assert!(
                now <= previous && now > 0,
                "gain must fall but not vanish yet"
            );
            previous = now;
        }
        let mut silent = Vec::new();
        dec.conceal(160, &mut silent);
        assert!(silent.iter().all(|&s| s == 0));
        // A real packet restores full level.
        let mut again = Vec::new();
        dec.decode(&frame, &mut again);
        assert_eq!(level(&again), original);
    }

    #[test]
    fn concealment_before_any_packet_is_silence() {
        let mut dec = G711Decoder::new(Law::A);
        let mut out = Vec::new();
        dec.conceal(80, &mut out);
        assert_eq!(out, vec![0; 80]);
    }
}
