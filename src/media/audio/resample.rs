//! Streaming mono sample-rate conversion over `rubato`.
//!
//! [`MonoResampler`] takes samples in arbitrary amounts with [`MonoResampler::push`], converts
//! them in fixed input chunks with rubato's synchronous FFT resampler, and queues the output
//! for [`MonoResampler::pop_into`]. The resampler's start-up delay is trimmed, so output sample
//! `n` lines up with input time `n / rate_out`; [`MonoResampler::finish`] flushes the tail so a
//! finite input yields `ceil(len * rate_out / rate_in)` samples. Equal rates pass through.

use std::collections::VecDeque;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler, ResamplerConstructionError};

/// Converts a mono stream from one sample rate to another, chunk by chunk.
pub(crate) struct MonoResampler {
    rate_in: u32,
    rate_out: u32,
    /// `None` when both rates are equal.
    fft: Option<Fft<f32>>,
    /// Input waiting for a full chunk.
    pending: Vec<f32>,
    /// Output of one `process_into_buffer` call.
    scratch: Vec<f32>,
    /// Converted samples ready to be taken.
    ready: VecDeque<f32>,
    /// Output samples still to discard: the resampler's start-up delay.
    delay_left: usize,
    /// Input samples pushed so far.
    total_in: u64,
    /// Output samples queued so far (after the delay trim).
    total_out: u64,
    finished: bool,
}

impl MonoResampler {
    /// A resampler from `rate_in` to `rate_out` that converts `chunk_in` input samples at a time
    /// (20 ms of input is a good choice: it is the granularity of the call's frames).
    pub(crate) fn new(
        rate_in: u32,
        rate_out: u32,
        chunk_in: usize,
    ) -> Result<Self, ResamplerConstructionError> {
        let fft = if rate_in == rate_out {
            None
        } else {
            Some(Fft::<f32>::new(
                rate_in as usize,
                rate_out as usize,
                chunk_in.max(1),
                1,
                FixedSync::Input,
            )?)
        };
        let (scratch_len, delay) = fft
            .as_ref()
            .map_or((0, 0), |f| (f.output_frames_max(), f.output_delay()));
        Ok(Self {
            rate_in,
            rate_out,
            fft,
            pending: Vec::with_capacity(chunk_in),
            scratch: vec![0.0; scratch_len],
            ready: VecDeque::new(),
            delay_left: delay,
            total_in: 0,
            total_out: 0,
            finished: false,
        })
    }

    /// Queues `input` (samples in `[-1.0, 1.0]`) and converts every complete chunk.
    pub(crate) fn push(&mut self, input: &[f32]) {
        if self.finished {
            return;
        }
        self.total_in += input.len() as u64;
        let Some(chunk) = self.fft.as_ref().map(|f| f.input_frames_next()) else {
            self.emit_passthrough(input);
            return;
        };
        self.pending.extend_from_slice(input);
        let mut start = 0;
        while self.pending.len() - start >= chunk {
            self.process_chunk(start, chunk);
            start += chunk;
        }
        self.pending.drain(..start);
    }

    /// Same as [`push`](Self::push) for 16-bit samples.
    pub(crate) fn push_i16(&mut self, input: &[i16]) {
        let floats: Vec<f32> = input.iter().map(|&s| i16_to_f32(s)).collect();
        self.push(&floats);
    }

    /// Marks the end of the input: converts what is pending and flushes the resampler so that
    /// the whole input comes out. Later pushes are ignored.
    pub(crate) fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        let expected = (self.total_in * u64::from(self.rate_out)).div_ceil(u64::from(self.rate_in));
        if self.fft.is_some() {
            // Feed silence until the delayed tail of the real input has come out.
            while self.total_out < expected {
                let len = self.pending.len();
                let chunk = self.fft.as_ref().map_or(1, |f| f.input_frames_next());
                self.pending.resize(chunk, 0.0);
                self.process_partial(len.min(chunk));
                self.pending.clear();
            }
        }
        let excess = self.total_out.saturating_sub(expected) as usize;
        let keep = self.ready.len().saturating_sub(excess);
        self.ready.truncate(keep);
        self.total_out = expected;
    }

    /// Number of converted samples ready.
    pub(crate) fn available(&self) -> usize {
        self.ready.len()
    }

    /// Moves up to `out.len()` converted samples into `out`, returning how many were moved.
    pub(crate) fn pop_into(&mut self, out: &mut [i16]) -> usize {
        let n = out.len().min(self.ready.len());
        for (dst, src) in out.iter_mut().zip(self.ready.drain(..n)) {
            *dst = f32_to_i16(src);
        }
        n
    }

    /// Drops the oldest converted samples so that at most `keep` remain.
    pub(crate) fn keep_newest(&mut self, keep: usize) -> usize {
        let excess = self.ready.len().saturating_sub(keep);
        self.ready.drain(..excess);
        excess
    }

    fn emit_passthrough(&mut self, input: &[f32]) {
        self.ready.extend(input.iter().copied());
        self.total_out += input.len() as u64;
    }

    fn process_chunk(&mut self, start: usize, chunk: usize) {
        let Some(fft) = self.fft.as_mut() else {
            return;
        };
        let input = InterleavedSlice::new(&self.pending[start..start + chunk], 1, chunk)
            .expect("the slice holds exactly one chunk of mono samples");
        let frames_out = self.scratch.len();
        let mut output = InterleavedSlice::new_mut(&mut self.scratch, 1, frames_out)
            .expect("scratch is sized by output_frames_max");
        let (_, produced) = fft
            .process_into_buffer(&input, &mut output, None)
            .expect("buffers are sized from input_frames_next and output_frames_max");
        self.queue_output(produced);
    }

    /// Processes the first `len` pending samples as a short final chunk (rubato pads the rest
    /// of the chunk with silence).
    fn process_partial(&mut self, len: usize) {
        let Some(fft) = self.fft.as_mut() else {
            return;
        };
        let chunk = fft.input_frames_next();
        let input = InterleavedSlice::new(&self.pending[..chunk], 1, chunk)
            .expect("pending was padded to one chunk");
        let frames_out = self.scratch.len();
        let mut output = InterleavedSlice::new_mut(&mut self.scratch, 1, frames_out)
            .expect("scratch is sized by output_frames_max");
        let indexing = Indexing::new().partial_len(len);
        let (_, produced) = fft
            .process_into_buffer(&input, &mut output, Some(&indexing))
            .expect("buffers are sized from input_frames_next and output_frames_max");
        self.queue_output(produced);
    }

    fn queue_output(&mut self, produced: usize) {
        let skip = self.delay_left.min(produced);
        self.delay_left -= skip;
        self.ready
            .extend(self.scratch[skip..produced].iter().copied());
        self.total_out += (produced - skip) as u64;
    }
}

/// Converts a steady stream of fixed-size frames from one rate to another, one frame in and
/// one frame out: the edge between a call's audio source/sink rate and its codec's PCM rate
/// (an 8 kHz G.711 call on a 48 kHz sound card or recording, for instance).
///
/// The first output frame starts with silence for the resampler's delay, so every later frame
/// is complete; the queue never holds more than two frames.
pub struct FrameResampler {
    inner: MonoResampler,
    frame_out: usize,
    started: bool,
}

impl FrameResampler {
    /// Frames of `frame_in` samples at `rate_in` become frames of the same duration at
    /// `rate_out`.
    pub fn new(rate_in: u32, rate_out: u32, frame_in: usize) -> Result<Self, super::AudioError> {
        let inner = MonoResampler::new(rate_in, rate_out, frame_in).map_err(|source| {
            super::AudioError::Resampler {
                from: rate_in,
                to: rate_out,
                source,
            }
        })?;
        let frame_out =
            (frame_in as u64 * u64::from(rate_out) / u64::from(rate_in.max(1))) as usize;
        Ok(FrameResampler {
            inner,
            frame_out,
            started: false,
        })
    }

    /// Samples in each output frame.
    pub fn frame_out(&self) -> usize {
        self.frame_out
    }

    /// Converts one input frame and appends exactly [`frame_out`](Self::frame_out) samples.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        self.inner.push_i16(input);
        let start = out.len();
        out.resize(start + self.frame_out, 0);
        let lead = if self.started {
            0
        } else {
            self.frame_out.saturating_sub(self.inner.available())
        };
        self.started = true;
        self.inner.pop_into(&mut out[start + lead..]);
        self.inner.keep_newest(2 * self.frame_out);
    }
}

/// Full-scale 16-bit sample to `[-1.0, 1.0)`.
pub(crate) fn i16_to_f32(s: i16) -> f32 {
    f32::from(s) / 32768.0
}

/// `[-1.0, 1.0]` to a 16-bit sample, rounded and clipped.
pub(crate) fn f32_to_i16(s: f32) -> i16 {
    (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, freq: f64, amp: f64, len: usize) -> Vec<f32> {
        (0..len)
            .map(|n| {
                (amp * (2.0 * std::f64::consts::PI * freq * n as f64 / f64::from(rate)).sin())
                    as f32
            })
            .collect()
    }

    fn drain(r: &mut MonoResampler) -> Vec<i16> {
        let mut out = vec![0; r.available()];
        r.pop_into(&mut out);
        out
    }

    #[test]
    fn equal_rates_pass_samples_through_unchanged() {
        let mut r = MonoResampler::new(8000, 8000, 160).unwrap();
        r.push_i16(&[1, -2, 300, i16::MIN, i16::MAX]);
        r.finish();
        assert_eq!(drain(&mut r), vec![1, -2, 300, i16::MIN, i16::MAX]);
    }

    #[test]
    fn finished_output_length_is_input_length_times_ratio() {
        for (from, to, len) in [
            (48000, 8000, 4801),
            (8000, 48000, 333),
            (44100, 8000, 10000),
        ] {
            let mut r = MonoResampler::new(from, to, 960).unwrap();
            // Uneven pushes exercise the chunk accumulator.
            let input = sine(from, 440.0, 0.5, len);
            for part in input.chunks(77) {
                r.push(part);
            }
            r.finish();
            let expected = (len as u64 * u64::from(to)).div_ceil(u64::from(from)) as usize;
            assert_eq!(r.available(), expected, "{from}->{to}");
        }
    }

    #[test]
    fn upsampled_sine_stays_aligned_with_its_input_after_delay_trim() {
        let mut r = MonoResampler::new(8000, 48000, 160).unwrap();
        let input = sine(8000, 1000.0, 0.5, 1600);
        r.push(&input);
        r.finish();
        let out = drain(&mut r);
        let reference = sine(48000, 1000.0, 0.5, out.len());
        // Compare the middle, away from the edges' filter transients.
        let err: f64 = (2000..8000)
            .map(|i| (f64::from(i16_to_f32(out[i])) - f64::from(reference[i])).abs())
            .fold(0.0, f64::max);
        assert!(err < 0.02, "max error {err}");
    }

    #[test]
    fn keep_newest_bounds_the_queue() {
        let mut r = MonoResampler::new(8000, 8000, 160).unwrap();
        r.push_i16(&[1, 2, 3, 4, 5]);
        assert_eq!(r.keep_newest(2), 3);
        assert_eq!(drain(&mut r), vec![4, 5]);
    }

    #[test]
    fn sample_conversion_clips_instead_of_wrapping() {
        assert_eq!(f32_to_i16(2.0), i16::MAX);
        assert_eq!(f32_to_i16(-2.0), i16::MIN);
        assert_eq!(f32_to_i16(i16_to_f32(-1234)), -1234);
    }

    #[test]
    fn frame_resampler_turns_each_frame_into_one_frame_of_the_same_duration() {
        let mut up = FrameResampler::new(8000, 48000, 160).unwrap();
        let mut down = FrameResampler::new(48000, 8000, 960).unwrap();
        let tone: Vec<i16> = sine(8000, 1000.0, 0.5, 8000)
            .iter()
            .map(|&s| f32_to_i16(s))
            .collect();
        let (mut wide, mut back) = (Vec::new(), Vec::new());
        for frame in tone.chunks(160) {
            let at = wide.len();
            up.process(frame, &mut wide);
            assert_eq!(wide.len() - at, 960);
            down.process(&wide[at..], &mut back);
        }
        assert_eq!(back.len(), tone.len());
        let steady = &back[800..];
        let rms = |x: &[i16]| {
            (x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
        };
        let want = rms(&tone[800..]);
        assert!(
            (rms(steady) / want - 1.0).abs() < 0.05,
            "{} vs {want}",
            rms(steady)
        );
        assert!((rms(&wide[4800..]) / want - 1.0).abs() < 0.05);
    }
}
