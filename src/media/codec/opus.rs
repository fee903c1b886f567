//! Opus (RFC 6716) over RTP (RFC 7587), through `audiopus` (the system libopus).
//!
//! The codec runs mono at 48 kHz with 20 ms frames (960 samples), which is also
//! the RTP clock of Opus whatever the audio bandwidth (RFC 7587 §4.1). The
//! encoder uses the VoIP application, variable bitrate, the configured
//! bitrate and complexity, and in-band FEC (RFC 6716 §2.1.7: a low-bitrate copy
//! of the previous frame rides in each packet). The decoder conceals a lost
//! frame with libopus' packet-loss concealment (decode with no packet) and,
//! when the packet after the gap has arrived, recovers the lost frame from its
//! FEC data instead (decode the next packet with `fec = true`).
//!
//! Driven one frame at a time by `media::session`, like the G.711 codec.

use audiopus::coder::{Decoder as LibDecoder, Encoder as LibEncoder};
use audiopus::{Application, Bandwidth, Bitrate, Channels, SampleRate};

use super::{Decoder, Encoder};

/// Sample rate of the PCM the codec takes and gives, and the RTP clock rate
/// of Opus (RFC 7587 §4.1).
pub const OPUS_RATE: u32 = 48_000;
/// Samples in one 20 ms frame at [`OPUS_RATE`].
pub const OPUS_FRAME_SAMPLES: usize = 960;
/// The longest Opus packet lasts 120 ms (RFC 6716 §3.2.5): the decoder's
/// output buffer must hold that much.
const MAX_PACKET_SAMPLES: usize = 5760;
/// RFC 6716 §3.4: a packet is at most 1275 bytes per frame; a 20 ms frame
/// never needs more.
const MAX_PAYLOAD: usize = 1275;

/// Encoder settings (what `--opus-bitrate` and `--opus-complexity` set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusConfig {
    /// Target bitrate in bit/s (libopus accepts 500–512000).
    pub bitrate: u32,
    /// Encoder complexity 0 (cheapest) to 10 (best).
    pub complexity: u8,
    /// Packet loss the encoder plans for, in percent: libopus sizes its
    /// in-band FEC from it and sends none at 0 (RFC 6716 §2.1.7).
    pub expected_loss_percent: u8,
    /// Highest audio sample rate worth encoding: the peer's
    /// `maxplaybackrate` (RFC 7587 §6.1); limits the coded bandwidth.
    pub max_playback_rate: u32,
}

/// Lowest and highest bitrate libopus accepts (bit/s).
pub const BITRATE_RANGE: std::ops::RangeInclusive<u32> = 500..=512_000;

impl Default for OpusConfig {
    /// 32 kbit/s (fullband speech, RFC 7587 §3.1.1 calls 28–40 kbit/s
    /// fullband), complexity 9, planned for 10 % loss so FEC is present.
    fn default() -> Self {
        OpusConfig {
            bitrate: 32_000,
            complexity: 9,
            expected_loss_percent: 10,
            max_playback_rate: OPUS_RATE,
        }
    }
}

impl OpusConfig {
    /// Applies what the peer asked for in its `a=fmtp` (RFC 7587 §6.1):
    /// `maxaveragebitrate` caps our bitrate, `maxplaybackrate` our bandwidth.
    pub fn limited_by(mut self, peer: &OpusParams) -> OpusConfig {
        if let Some(max) = peer.max_average_bitrate {
            self.bitrate = self.bitrate.min(max.max(*BITRATE_RANGE.start()));
        }
        if let Some(rate) = peer.max_playback_rate {
            self.max_playback_rate = self.max_playback_rate.min(rate);
        }
        self
    }

    /// RFC 7587 §6.1 `maxplaybackrate` → the widest Opus bandwidth worth
    /// coding (RFC 6716 §2: NB 8, MB 12, WB 16, SWB 24, FB 48 kHz sampling).
    fn bandwidth(&self) -> Bandwidth {
        match self.max_playback_rate {
            0..=8_000 => Bandwidth::Narrowband,
            8_001..=12_000 => Bandwidth::Mediumband,
            12_001..=16_000 => Bandwidth::Wideband,
            16_001..=24_000 => Bandwidth::Superwideband,
            _ => Bandwidth::Fullband,
        }
    }
}

/// The Opus `a=fmtp` parameters that change how we encode (RFC 7587 §6.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpusParams {
    /// `maxplaybackrate`: the highest rate the receiver will play.
    pub max_playback_rate: Option<u32>,
    /// `maxaveragebitrate`: the receiver's bitrate limit.
    pub max_average_bitrate: Option<u32>,
    /// `useinbandfec=1`: the receiver can use in-band FEC.
    pub use_inband_fec: bool,
    /// `stereo=1`: the receiver prefers stereo (we send mono anyway,
    /// RFC 7587 §7.1 allows it).
    pub stereo: bool,
}

impl OpusParams {
    /// Reads `a=fmtp` parameters (`name=value` separated by `;`, spaces
    /// allowed, RFC 7587 §7); unknown or malformed parameters are ignored.
    pub fn parse(fmtp: &str) -> OpusParams {
        let mut params = OpusParams::default();
        for part in fmtp.split(';') {
            let Some((name, value)) = part.split_once('=') else {
                continue;
            };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "maxplaybackrate" => params.max_playback_rate = value.parse().ok(),
                "maxaveragebitrate" => params.max_average_bitrate = value.parse().ok(),
                "useinbandfec" => params.use_inband_fec = value == "1",
                "stereo" => params.stereo = value == "1",
                _ => {}
            }
        }
        params
    }
}

/// Why an Opus encoder or decoder could not be created.
#[derive(Debug, thiserror::Error)]
pub enum OpusError {
    #[error("libopus refused the encoder settings: {0}")]
    Encoder(audiopus::Error),
    #[error("libopus refused to create a decoder: {0}")]
    Decoder(audiopus::Error),
}

/// Opus encoder: one 20 ms mono frame in, one packet out.
pub struct OpusEncoder {
    inner: LibEncoder,
    buf: Vec<u8>,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder").finish_non_exhaustive()
    }
}

impl OpusEncoder {
    /// An encoder with `config`, in-band FEC on.
    pub fn new(config: &OpusConfig) -> Result<Self, OpusError> {
        let mut inner = LibEncoder::new(SampleRate::Hz48000, Channels::Mono, Application::Voip)
            .map_err(OpusError::Encoder)?;
        let bitrate = config
            .bitrate
            .clamp(*BITRATE_RANGE.start(), *BITRATE_RANGE.end());
        inner
            .set_bitrate(Bitrate::BitsPerSecond(bitrate as i32))
            .and_then(|()| inner.set_complexity(config.complexity.min(10)))
            .and_then(|()| inner.set_inband_fec(true))
            .and_then(|()| inner.set_packet_loss_perc(config.expected_loss_percent.min(100)))
            .and_then(|()| inner.set_max_bandwidth(config.bandwidth()))
            .map_err(OpusError::Encoder)?;
        Ok(OpusEncoder {
            inner,
            buf: vec![0; MAX_PAYLOAD],
        })
    }
}

impl Encoder for OpusEncoder {
    /// Encodes one frame (2.5–60 ms at 48 kHz; 960 samples normally). A frame
    /// of another size cannot be coded and yields no payload.
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) {
        match self.inner.encode(pcm, &mut self.buf) {
            Ok(n) => out.extend_from_slice(&self.buf[..n]),
            Err(error) => tracing::debug!(%error, samples = pcm.len(), "Opus encode failed"),
        }
    }
}

/// Opus decoder with libopus concealment and FEC recovery.
pub struct OpusDecoder {
    inner: LibDecoder,
    buf: Vec<i16>,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder").finish_non_exhaustive()
    }
}

impl OpusDecoder {
    /// A mono 48 kHz decoder (a stereo stream is mixed down by libopus).
    pub fn new() -> Result<Self, OpusError> {
        let inner =
            LibDecoder::new(SampleRate::Hz48000, Channels::Mono).map_err(OpusError::Decoder)?;
        Ok(OpusDecoder {
            inner,
            buf: vec![0; MAX_PACKET_SAMPLES],
        })
    }

    /// Runs libopus on `packet` (`None`: conceal) producing `samples` samples
    /// (any packet length when `samples` is `None`) and appends them.
    fn run(
        &mut self,
        packet: Option<&[u8]>,
        samples: Option<usize>,
        fec: bool,
        out: &mut Vec<i16>,
    ) -> bool {
        let len = samples
            .unwrap_or(MAX_PACKET_SAMPLES)
            .min(MAX_PACKET_SAMPLES);
        let buf = &mut self.buf[..len];
        match self.inner.decode(packet, buf, fec) {
            Ok(n) => {
                out.extend_from_slice(&self.buf[..n.min(len)]);
                true
            }
            Err(error) => {
                tracing::debug!(%error, fec, "Opus decode failed");
                false
            }
        }
    }
}

impl Decoder for OpusDecoder {
    /// Decodes one packet; a packet libopus rejects is concealed instead
    /// (RFC 6716 §4.4: treat a corrupt packet as lost).
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) {
        let ok = !payload.is_empty() && self.run(Some(payload), None, false, out);
        if !ok {
            self.conceal(OPUS_FRAME_SAMPLES, out);
        }
    }

    /// RFC 6716 §4.4: libopus extrapolates the lost frame from its state.
    fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) {
        let start = out.len();
        if !self.run(None, Some(samples), false, out) {
            out.truncate(start);
        }
        out.resize(start + samples, 0);
    }

    /// RFC 6716 §2.1.7 / RFC 7587 §3.3: the packet after a loss carries the
    /// lost frame's FEC copy; decoding it with `fec = true` and the lost
    /// frame's duration returns that frame. False when the packet holds no
    /// FEC data (libopus then conceals; the output is still appended).
    fn recover_from_next(
        &mut self,
        next_payload: &[u8],
        samples: usize,
        out: &mut Vec<i16>,
    ) -> bool {
        if next_payload.is_empty() || !has_fec(next_payload) {
            return false;
        }
        let start = out.len();
        if self.run(Some(next_payload), Some(samples), true, out) {
            out.resize(start + samples, 0);
            true
        } else {
            out.truncate(start);
            false
        }
    }
}

/// Whether a packet's first Opus frame carries LBRR (FEC) data.
///
/// RFC 6716 §3.1: the TOC byte gives the configuration (0–11 SILK, 12–15
/// hybrid, both with a SILK layer; 16–31 CELT-only, which has no FEC), the
/// stereo flag and the frame count code. RFC 6716 §4.2.3–§4.2.4: the SILK
/// layer opens, per channel, with one VAD flag per 20 ms SILK frame and then
/// the LBRR flag; these are equiprobable bits, so they are the top bits of
/// the first frame's first byte. Codes 2 and 3 (frame lengths before the
/// data) are not parsed and are assumed to carry FEC, letting libopus decide.
fn has_fec(packet: &[u8]) -> bool {
    let Some(&toc) = packet.first() else {
        return false;
    };
    let config = toc >> 3;
    let silk_frames: u32 = match config {
        0..=11 => match config % 4 {
            0 | 1 => 1,
            2 => 2,
            _ => 3,
        },
        12..=15 => 1,
        _ => return false,
    };
    let stereo = toc & 0x04 != 0;
    match (toc & 0x03, packet.get(1)) {
        (0 | 1, Some(&first)) => {
            let mut mask = 1u8 << (7 - silk_frames);
            if stereo {
                mask |= 1u8 << (7 - (2 * silk_frames + 1));
            }
            first & mask != 0
        }
        (0 | 1, None) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::signal::{ToneGenerator, dominant_frequency, rms_dbfs};

    fn tone(freq: f64, frames: usize) -> Vec<Vec<i16>> {
        let mut g = ToneGenerator::new(freq, 0.5, OPUS_RATE);
        (0..frames)
            .map(|_| {
                let mut f = vec![0i16; OPUS_FRAME_SAMPLES];
                g.fill(&mut f);
                f
            })
            .collect()
    }

    fn encode_all(frames: &[Vec<i16>]) -> Vec<Vec<u8>> {
        let mut enc = OpusEncoder::new(&OpusConfig::default()).expect("default settings are valid");
        frames
            .iter()
            .map(|f| {
                let mut p = Vec::new();
                enc.encode(f, &mut p);
                p
            })
            .collect()
    }

    /// Highest normalized cross-correlation of `a` with any window of `b`
    /// of the same length.
    fn best_correlation(a: &[i16], b: &[i16]) -> f64 {
        b.windows(a.len())
            .map(|w| {
                let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
                for (&x, &y) in a.iter().zip(w) {
                    let (x, y) = (f64::from(x), f64::from(y));
                    ab += x * y;
                    aa += x * x;
                    bb += y * y;
                }
                if aa == 0.0 || bb == 0.0 {
                    0.0
                } else {
                    ab / (aa * bb).sqrt()
                }
            })
            .fold(f64::MIN, f64::max)
    }

    #[test]
    fn round_trip_keeps_a_tone_frequency_and_level() {
        let frames = tone(1000.0, 50);
        let packets = encode_all(&frames);
        for p in &packets {
            assert!(
                (20..=400).contains(&p.len()),
                "{} bytes for 20 ms at 32 kbit/s",
                p.len()
            );
        }
        let mut dec = OpusDecoder::new().expect("decoder");
        let mut out = Vec::new();
        for p in &packets {
            dec.decode(p, &mut out);
        }
        assert_eq!(out.len(), 50 * OPUS_FRAME_SAMPLES);
        let steady = &out[10 * OPUS_FRAME_SAMPLES..];
        let f = dominant_frequency(steady, OPUS_RATE);
        assert!((f - 1000.0).abs() < 10.0, "decoded {f} Hz");
        let sent = rms_dbfs(&frames[10..].concat());
        let got = rms_dbfs(steady);
        assert!((got - sent).abs() < 1.5, "level {got:.1} dBFS vs {sent:.1}");
    }

    #[test]
    fn bitrate_setting_changes_packet_size() {
        let frames = tone(440.0, 25);
        let size = |bitrate| {
            let mut enc = OpusEncoder::new(&OpusConfig {
                bitrate,
                ..OpusConfig::default()
            })
            .unwrap();
            let mut total = 0;
            for f in &frames {
                let mut p = Vec::new();
                enc.encode(f, &mut p);
                total += p.len();
            }
            total
        };
        let (low, high) = (size(12_000), size(64_000));
        assert!(high > 2 * low, "12 kbit/s: {low} B, 64 kbit/s: {high} B");
    }

    #[test]
    fn concealment_continues_the_tone_then_fades() {
        let packets = encode_all(&tone(500.0, 30));
        let mut dec = OpusDecoder::new().unwrap();
        let mut out = Vec::new();
        for p in &packets {
            dec.decode(p, &mut out);
        }
        let mut concealed = Vec::new();
        dec.conceal(OPUS_FRAME_SAMPLES, &mut concealed);
        assert_eq!(concealed.len(), OPUS_FRAME_SAMPLES);
        let f = dominant_frequency(&concealed, OPUS_RATE);
        assert!((f - 500.0).abs() < 25.0, "concealed frame at {f} Hz");
        assert!(rms_dbfs(&concealed) > -20.0, "{}", rms_dbfs(&concealed));
        for _ in 0..20 {
            concealed.clear();
            dec.conceal(OPUS_FRAME_SAMPLES, &mut concealed);
        }
        assert!(
            rms_dbfs(&concealed) < -40.0,
            "long loss fades to silence: {}",
            rms_dbfs(&concealed)
        );
    }

    #[test]
    fn fec_recovers_a_dropped_frame_from_the_next_packet() {
        // The tone jumps from 700 Hz to 1300 Hz at the lost frame, so
        // concealment (which extrapolates 700 Hz) cannot pass for recovery.
        let lost = 25;
        let mut frames = tone(700.0, lost);
        frames.extend(tone(1300.0, 15));
        let packets = encode_all(&frames);
        let decoder_before_loss = || {
            let mut dec = OpusDecoder::new().unwrap();
            let mut out = Vec::new();
            for p in &packets[..lost] {
                dec.decode(p, &mut out);
            }
            dec
        };
        assert!(
            has_fec(&packets[lost + 1]),
            "FEC present at 10 % planned loss"
        );
        let mut dec = decoder_before_loss();
        let mut recovered = Vec::new();
        assert!(dec.recover_from_next(&packets[lost + 1], OPUS_FRAME_SAMPLES, &mut recovered));
        assert_eq!(recovered.len(), OPUS_FRAME_SAMPLES);
        let mut concealed = Vec::new();
        decoder_before_loss().conceal(OPUS_FRAME_SAMPLES, &mut concealed);
        // The decoded stream is the input delayed by the codec's lookahead
        // (6.5 ms = 312 samples): compare the frame's second half (all
        // 1300 Hz) with the original around that lag.
        let start = lost * OPUS_FRAME_SAMPLES;
        let all = frames.concat();
        let original = &all[start..start + OPUS_FRAME_SAMPLES];
        let half = OPUS_FRAME_SAMPLES / 2;
        let c_fec = best_correlation(&recovered[half..], original);
        let c_plc = best_correlation(&concealed[half..], original);
        assert!(
            c_fec > 0.8,
            "recovered frame correlates {c_fec:.3} with the original"
        );
        assert!(c_plc < 0.5, "concealment correlates only {c_plc:.3}");
        let f = dominant_frequency(&recovered[half..], OPUS_RATE);
        assert!((f - 1300.0).abs() < 30.0, "recovered frame at {f} Hz");
        let level = rms_dbfs(&recovered[half..]) - rms_dbfs(original);
        assert!(level.abs() < 3.0, "recovered level off by {level:.1} dB");
        // The next packet still decodes normally afterwards.
        let mut next = Vec::new();
        dec.decode(&packets[lost + 1], &mut next);
        assert_eq!(next.len(), OPUS_FRAME_SAMPLES);
    }

    #[test]
    fn without_planned_loss_there_is_no_fec_to_recover() {
        let frames = tone(700.0, 10);
        let mut enc = OpusEncoder::new(&OpusConfig {
            expected_loss_percent: 0,
            ..OpusConfig::default()
        })
        .unwrap();
        let mut last = Vec::new();
        for f in &frames {
            last.clear();
            enc.encode(f, &mut last);
        }
        let mut dec = OpusDecoder::new().unwrap();
        let mut out = Vec::new();
        assert!(!dec.recover_from_next(&last, OPUS_FRAME_SAMPLES, &mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn garbage_and_empty_payloads_are_concealed_not_fatal() {
        let mut dec = OpusDecoder::new().unwrap();
        let mut out = Vec::new();
        dec.decode(&[], &mut out);
        dec.decode(&[0xFF, 0xFF, 0xFF], &mut out);
        assert_eq!(out.len(), 2 * OPUS_FRAME_SAMPLES);
        let mut enc = OpusEncoder::new(&OpusConfig::default()).unwrap();
        let mut p = Vec::new();
        enc.encode(&[0; 100], &mut p);
        assert!(p.is_empty(), "a 100-sample frame is not an Opus frame size");
    }

    #[test]
    fn fmtp_parameters_are_read_and_limit_the_encoder() {
        let p = OpusParams::parse(
            "maxplaybackrate=16000; sprop-maxcapturerate=16000; maxaveragebitrate=20000; stereo=1; useinbandfec=1",
        );
        assert_eq!(
            p,
            OpusParams {
                max_playback_rate: Some(16000),
                max_average_bitrate: Some(20000),
                use_inband_fec: true,
                stereo: true,
            }
        );
        let c = OpusConfig::default().limited_by(&p);
        assert_eq!((c.bitrate, c.max_playback_rate), (20000, 16000));
        assert!(matches!(c.bandwidth(), Bandwidth::Wideband));
        assert!(OpusParams::parse("minptime=10;useinbandfec=1").use_inband_fec);
        assert_eq!(OpusParams::parse("garbage;=;x=").max_playback_rate, None);
    }
}
