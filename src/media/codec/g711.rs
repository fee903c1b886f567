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

/// G.711 decoder with packet-loss concealment in the style of ITU-T G.711
/// Appendix I (see [`Concealer`]).
#[derive(Debug, Clone)]
pub struct G711Decoder {
    law: Law,
    plc: Concealer,
}

impl G711Decoder {
    /// A decoder for the given law.
    pub fn new(law: Law) -> Self {
        G711Decoder {
            law,
            plc: Concealer::new(),
        }
    }
}

impl Decoder for G711Decoder {
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) {
        let start = out.len();
        out.extend(payload.iter().map(|&c| self.law.expand(c)));
        self.plc.received(&mut out[start..]);
    }

    fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) {
        self.plc.conceal(samples, out);
    }
}

/// Samples of history kept: three of the longest pitch periods plus a
/// quarter of one (48.75 ms at 8 kHz, as in G.711 Appendix I).
const HISTORY: usize = 3 * PITCH_MAX + PITCH_MAX / 4;
/// Shortest pitch period searched: 5 ms (200 Hz).
const PITCH_MIN: usize = 40;
/// Longest pitch period searched: 15 ms (66.7 Hz).
const PITCH_MAX: usize = 120;
/// Length of the correlation window of the pitch search: 20 ms.
const CORRELATION: usize = 160;
/// The first 10 ms of an erasure play at full level.
const FULL_LEVEL: usize = 80;
/// Then the level falls by 20 % per 10 ms: silence after 60 ms.
const FADE: usize = 400;
/// Every 10 ms one more pitch period is repeated, up to three.
const PERIOD_STEP: usize = 80;
/// Longest overlap-add at the first good frame: 10 ms.
const MAX_OLA: usize = 80;

/// Packet-loss concealment for 8 kHz speech after ITU-T G.711 Appendix I.
///
/// - The decoder keeps the last 48.75 ms of good audio. When a frame is
///   lost, the pitch period is the lag in 5–15 ms that maximizes the
///   normalized autocorrelation of the last 20 ms of history.
/// - The last pitch period is repeated. Its loop point is smoothed by an
///   overlap-add over a quarter period with the samples one repeat length
///   earlier, so the repetition has no step.
/// - After 10 ms the repeated stretch widens to two periods, after 20 ms
///   to three (crossfaded over a quarter period at each change), which
///   makes a long erasure less buzzy.
/// - Attenuation: full level for 10 ms, then 20 % less per 10 ms, silence
///   after 60 ms.
/// - The first good frame after an erasure is overlap-added with the
///   continued synthetic signal over a quarter period plus 4 ms per further
///   10 ms of erasure (at most 10 ms).
///
/// Unlike Appendix I, the output is not delayed by 3.75 ms: a concealed
/// frame starts one pitch period back in the history, which continues the
/// waveform without the extra latency.
#[derive(Debug, Clone)]
pub struct Concealer {
    /// Last good samples, oldest first, always `HISTORY` long.
    history: Vec<i16>,
    /// Samples concealed in the current erasure (0: none).
    erased: usize,
    /// Pitch period of the current erasure.
    pitch: usize,
    /// Periods in `region` (1..=3).
    periods: usize,
    /// The stretch of history being repeated, loop point smoothed.
    region: Vec<f32>,
    pos: usize,
    /// While widening: the previous region and position, faded out over
    /// the remaining samples.
    fading: Option<(Vec<f32>, usize, usize)>,
}

impl Default for Concealer {
    fn default() -> Self {
        Self::new()
    }
}

impl Concealer {
    /// A concealer with silent history.
    pub fn new() -> Self {
        Concealer {
            history: vec![0; HISTORY],
            erased: 0,
            pitch: PITCH_MAX,
            periods: 1,
            region: Vec::new(),
            pos: 0,
            fading: None,
        }
    }

    /// Takes a decoded good frame: smooths its start into the concealment
    /// that preceded it, if any, and remembers it as history.
    pub fn received(&mut self, frame: &mut [i16]) {
        if self.erased > 0 {
            let extra = (self.erased - 1) / PERIOD_STEP * 32;
            let len = (self.pitch / 4 + extra).min(MAX_OLA).min(frame.len());
            for (i, sample) in frame.iter_mut().take(len).enumerate() {
                let synthetic = self.next_sample();
                let w = (i + 1) as f32 / (len + 1) as f32;
                *sample = (synthetic * (1.0 - w) + f32::from(*sample) * w) as i16;
            }
            self.erased = 0;
        }
        if frame.len() >= HISTORY {
            self.history
                .copy_from_slice(&frame[frame.len() - HISTORY..]);
        } else {
            self.history.drain(..frame.len());
            self.history.extend_from_slice(frame);
        }
    }

    /// Appends `samples` samples that continue the last good audio.
    pub fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) {
        if self.erased == 0 {
            self.start_erasure();
        }
        out.extend((0..samples).map(|_| {
            let widen = self.erased / PERIOD_STEP + 1;
            if widen > self.periods && widen <= 3 {
                self.widen(widen);
            }
            self.next_sample() as i16
        }));
    }

    fn start_erasure(&mut self) {
        self.pitch = pitch_period(&self.history);
        self.periods = 1;
        self.region = self.repeat_region(1);
        self.pos = 0;
        self.fading = None;
    }

    /// The last `periods` pitch periods of history, with the loop from its
    /// end back to its start smoothed over a quarter period.
    fn repeat_region(&self, periods: usize) -> Vec<f32> {
        let len = periods * self.pitch;
        let quarter = self.pitch / 4;
        let h = &self.history;
        let end = h.len();
        let mut region: Vec<f32> = h[end - len..].iter().map(|&s| f32::from(s)).collect();
        for k in 0..quarter {
            let w = (k + 1) as f32 / (quarter + 1) as f32;
            let before = f32::from(h[end - len - quarter + k]);
            let slot = &mut region[len - quarter + k];
            *slot = *slot * (1.0 - w) + before * w;
        }
        region
    }

    /// Switches to repeating `periods` periods, at the same phase.
    fn widen(&mut self, periods: usize) {
        let wider = self.repeat_region(periods);
        let old = std::mem::replace(&mut self.region, wider);
        let old_pos = self.pos;
        self.pos = (self.pos + (periods - self.periods) * self.pitch) % self.region.len();
        self.periods = periods;
        self.fading = Some((old, old_pos, self.pitch / 4));
    }

    /// The next synthetic sample, attenuated; advances the erasure.
    fn next_sample(&mut self) -> f32 {
        let mut value = self.region.get(self.pos).copied().unwrap_or(0.0);
        self.pos = (self.pos + 1) % self.region.len().max(1);
        if let Some((old, pos, left)) = &mut self.fading {
            let total = (self.pitch / 4).max(1);
            let w = *left as f32 / (total + 1) as f32;
            value = old[*pos] * w + value * (1.0 - w);
            *pos = (*pos + 1) % old.len();
            *left = left.saturating_sub(1);
            if *left == 0 {
                self.fading = None;
            }
        }
        let gain = if self.erased < FULL_LEVEL {
            1.0
        } else {
            1.0 - ((self.erased - FULL_LEVEL) as f32 / FADE as f32).min(1.0)
        };
        self.erased += 1;
        value * gain
    }
}

/// The lag in `PITCH_MIN..=PITCH_MAX` maximizing the autocorrelation of the
/// last `CORRELATION` samples, normalized by the energy of the lagged
/// segment (G.711 Appendix I).
fn pitch_period(history: &[i16]) -> usize {
    let end = history.len();
    let recent = &history[end - CORRELATION..];
    let mut best = (PITCH_MAX, 0.0f64);
    for lag in PITCH_MIN..=PITCH_MAX {
        let lagged = &history[end - CORRELATION - lag..end - lag];
        let (mut corr, mut energy) = (0.0f64, 0.0f64);
        for (&a, &b) in recent.iter().zip(lagged) {
            corr += f64::from(a) * f64::from(b);
            energy += f64::from(b) * f64::from(b);
        }
        if energy > 0.0 {
            let score = corr / energy.sqrt();
            if score > best.1 {
                best = (lag, score);
            }
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::signal::{ToneGenerator, dominant_frequency, rms_dbfs};

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

    /// Decodes one second of a μ-law tone and returns the decoder and the
    /// tone generator, ready for the next frame.
    fn decoder_after_tone(hz: f64) -> (G711Decoder, ToneGenerator) {
        let mut tone = ToneGenerator::new(hz, 0.5, 8000);
        let mut enc = G711Encoder::new(Law::Mu);
        let mut dec = G711Decoder::new(Law::Mu);
        let mut pcm = [0i16; 160];
        for _ in 0..50 {
            tone.fill(&mut pcm);
            let mut bytes = Vec::new();
            enc.encode(&pcm, &mut bytes);
            dec.decode(&bytes, &mut Vec::new());
        }
        (dec, tone)
    }

    #[test]
    fn concealed_frame_after_a_tone_continues_the_tone() {
        for hz in [440.0, 1000.0, 150.0] {
            let (mut dec, mut tone) = decoder_after_tone(hz);
            let mut concealed = Vec::new();
            dec.conceal(160, &mut concealed);
            let f = dominant_frequency(&concealed, 8000);
            assert!(
                (f - hz).abs() < hz * 0.02,
                "{hz} Hz tone concealed as {f} Hz"
            );
            // The first 10 ms match what the sender sent, in phase.
            let mut expected = [0i16; 80];
            tone.fill(&mut expected);
            let error: Vec<i16> = concealed[..80]
                .iter()
                .zip(expected)
                .map(|(&c, e)| c.saturating_sub(e))
                .collect();
            assert!(
                rms_dbfs(&error) < rms_dbfs(&expected) - 14.0,
                "{hz} Hz: error {} dBFS",
                rms_dbfs(&error)
            );
        }
    }

    #[test]
    fn concealment_fades_over_consecutive_losses_to_silence_after_60ms() {
        let (mut dec, _) = decoder_after_tone(440.0);
        let level = |s: &[i16]| rms_dbfs(s);
        let mut frames = Vec::new();
        for _ in 0..4 {
            let mut concealed = Vec::new();
            dec.conceal(160, &mut concealed);
            frames.push(concealed);
        }
        // Full level for the first 10 ms (the tone is at about −9 dBFS).
        assert!((level(&frames[0][..80]) + 9.0).abs() < 1.0);
        assert!(level(&frames[1]) < level(&frames[0]) - 3.0);
        assert!(level(&frames[2]) < level(&frames[1]) - 3.0);
        assert!(
            frames[2][150..].iter().all(|&s| s.abs() < 400),
            "fading out"
        );
        assert!(frames[3].iter().all(|&s| s == 0));
        // Still 440 Hz while fading.
        let f = dominant_frequency(&frames[1], 8000);
        assert!((f - 440.0).abs() < 10.0, "{f}");
    }

    #[test]
    fn first_good_frame_after_a_loss_joins_without_a_step() {
        let (mut dec, mut tone) = decoder_after_tone(440.0);
        let mut lost = [0i16; 160];
        let mut pcm = [0i16; 160];
        let mut out = Vec::new();
        dec.conceal(160, &mut out);
        tone.fill(&mut lost);
        tone.fill(&mut pcm);
        let mut bytes = Vec::new();
        G711Encoder::new(Law::Mu).encode(&pcm, &mut bytes);
        dec.decode(&bytes, &mut out);
        // A 440 Hz tone at half scale moves at most 5660 per sample.
        let steepest = out
            .windows(2)
            .map(|w| (i32::from(w[1]) - i32::from(w[0])).abs())
            .max()
            .unwrap_or(0);
        assert!(steepest < 6000, "step of {steepest}");
        // Around the join the output stays close to the tone itself.
        let ideal: Vec<i16> = lost.iter().chain(&pcm).copied().collect();
        let error: Vec<i16> = (120..200)
            .map(|i| out[i].saturating_sub(ideal[i]))
            .collect();
        assert!(rms_dbfs(&error) < rms_dbfs(&ideal[120..200]) - 10.0);
        // And the good frame's tail is the frame itself.
        let tail = &out[160 + 100..];
        let decoded: Vec<i16> = bytes[100..].iter().map(|&c| ulaw_to_linear(c)).collect();
        assert_eq!(tail, &decoded[..]);
    }

    #[test]
    fn concealment_before_any_packet_is_silence() {
        let mut dec = G711Decoder::new(Law::A);
        let mut out = Vec::new();
        dec.conceal(80, &mut out);
        assert_eq!(out, vec![0; 80]);
    }
}
