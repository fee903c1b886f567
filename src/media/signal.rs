//! Test signals and their measurement: sine tones, a speech-like chirp
//! sequence, the dominant frequency of a recording, its level in dBFS, and
//! the delay between a sent and a received signal by cross-correlation.
//! Used by the loopback report and by tests; pure functions, no I/O.

use std::f64::consts::PI;
use std::ops::Range;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rustfft::FftPlanner;
use rustfft::num_complex::Complex;

/// `n` samples of a sine at `freq_hz` with peak `amplitude` (0.0..=1.0 of
/// full scale), sampled at `rate` Hz, starting at phase 0.
pub fn sine(freq_hz: f64, amplitude: f64, rate: u32, n: usize) -> Vec<i16> {
    let mut generator = ToneGenerator::new(freq_hz, amplitude, rate);
    let mut out = vec![0; n];
    generator.fill(&mut out);
    out
}

/// A sine generator that keeps its phase from one frame to the next.
#[derive(Debug, Clone)]
pub struct ToneGenerator {
    /// Phase advance per sample, in radians.
    step: f64,
    phase: f64,
    peak: f64,
}

impl ToneGenerator {
    /// A tone of `freq_hz` at `amplitude` (fraction of full scale) and `rate` Hz.
    pub fn new(freq_hz: f64, amplitude: f64, rate: u32) -> Self {
        ToneGenerator {
            step: 2.0 * PI * freq_hz / f64::from(rate),
            phase: 0.0,
            peak: amplitude.clamp(0.0, 1.0) * f64::from(i16::MAX),
        }
    }

    /// Overwrites `out` with the next samples of the tone.
    pub fn fill(&mut self, out: &mut [i16]) {
        for sample in out {
            *sample = (self.phase.sin() * self.peak).round() as i16;
            self.phase = (self.phase + self.step) % (2.0 * PI);
        }
    }
}

/// RMS level relative to a full-scale square wave (0 dBFS = RMS of 32768);
/// a full-scale sine reads about −3 dBFS. Silence or no samples gives −∞.
pub fn rms_dbfs(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return f64::NEG_INFINITY;
    }
    let energy: f64 = samples.iter().map(|&s| f64::from(s).powi(2)).sum();
    let rms = (energy / samples.len() as f64).sqrt();
    20.0 * (rms / 32768.0).log10()
}

/// The frequency in Hz of the strongest spectral peak of `samples` at
/// `rate` Hz, or 0.0 for fewer than two samples.
///
/// Hann window, zero-padding to a power of two, radix-2 FFT, then parabolic
/// interpolation of the log magnitude around the peak bin.
pub fn dominant_frequency(samples: &[i16], rate: u32) -> f64 {
    if samples.len() < 2 {
        return 0.0;
    }
    let size = samples.len().next_power_of_two();
    let mut re = vec![0.0; size];
    let mut im = vec![0.0; size];
    let last = (samples.len() - 1) as f64;
    for (i, (&s, slot)) in samples.iter().zip(re.iter_mut()).enumerate() {
        let hann = 0.5 - 0.5 * (2.0 * PI * i as f64 / last).cos();
        *slot = f64::from(s) * hann;
    }
    fft(&mut re, &mut im);
    let magnitude = |k: usize| (re[k].powi(2) + im[k].powi(2)).sqrt().max(1e-12).ln();
    // Skip DC; search up to Nyquist.
    let peak = (1..size / 2)
        .max_by(|&a, &b| magnitude(a).total_cmp(&magnitude(b)))
        .unwrap_or(1);
    let offset = if peak + 1 < size / 2 {
        let (l, c, r) = (magnitude(peak - 1), magnitude(peak), magnitude(peak + 1));
        let denominator = l - 2.0 * c + r;
        if denominator.abs() > f64::EPSILON {
            0.5 * (l - r) / denominator
        } else {
            0.0
        }
    } else {
        0.0
    };
    (peak as f64 + offset) * f64::from(rate) / size as f64
}

/// In-place iterative radix-2 Cooley–Tukey FFT; `re.len()` is a power of two.
fn fft(re: &mut [f64], im: &mut [f64]) {
    let n = re.len();
    debug_assert!(n.is_power_of_two() && im.len() == n);
    let bits = n.trailing_zeros();
    for i in 0..n {
        let j = i.reverse_bits() >> (usize::BITS - bits);
        if j > i {
            re.swap(i, j);
            im.swap(i, j);
        }
    }
    let mut len = 2;
    while len <= n {
        let angle = -2.0 * PI / len as f64;
        for start in (0..n).step_by(len) {
            for k in 0..len / 2 {
                let (w_im, w_re) = (angle * k as f64).sin_cos();
                let (a, b) = (start + k, start + k + len / 2);
                let t_re = re[b] * w_re - im[b] * w_im;
                let t_im = re[b] * w_im + im[b] * w_re;
                re[b] = re[a] - t_re;
                im[b] = im[a] - t_im;
                re[a] += t_re;
                im[a] += t_im;
            }
        }
        len *= 2;
    }
}

/// A reproducible, speech-like test signal: talk spurts made of linear
/// chirps (80–300 ms each, sweeping between random frequencies in the
/// telephone band 300–3400 Hz, at random levels) separated by pauses of
/// 20–150 ms. Unlike a tone or a periodic chirp it never repeats, so its
/// cross-correlation with a delayed copy has a single sharp peak.
#[derive(Debug, Clone)]
pub struct ChirpSequence {
    rng: StdRng,
    rate: f64,
    peak: f64,
    phase: f64,
    /// Current segment: samples left, and for a chirp the start frequency,
    /// the frequency change per sample and the level.
    left: usize,
    done: usize,
    freq: f64,
    sweep: f64,
    level: f64,
}

impl ChirpSequence {
    /// The sequence for `seed` at `rate` Hz, peaking at `amplitude`
    /// (fraction of full scale).
    pub fn new(seed: u64, amplitude: f64, rate: u32) -> Self {
        ChirpSequence {
            rng: StdRng::seed_from_u64(seed),
            rate: f64::from(rate),
            peak: amplitude.clamp(0.0, 1.0) * f64::from(i16::MAX),
            phase: 0.0,
            left: 0,
            done: 0,
            freq: 0.0,
            sweep: 0.0,
            level: 0.0,
        }
    }

    /// Draws the next segment: a pause after a chirp, a chirp after a pause.
    fn next_segment(&mut self) {
        if self.level > 0.0 {
            self.level = 0.0;
            self.left = (self.rate * self.rng.random_range(0.020..0.150)) as usize;
            return;
        }
        let length = (self.rate * self.rng.random_range(0.080..0.300)) as usize;
        let top = 3400.0_f64.min(self.rate * 0.45);
        let from = self.rng.random_range(300.0..top);
        let to = self.rng.random_range(300.0..top);
        self.left = length.max(1);
        self.done = 0;
        self.freq = from;
        self.sweep = (to - from) / self.left as f64;
        self.level = self.rng.random_range(0.5..1.0);
    }

    /// Overwrites `out` with the next samples.
    pub fn fill(&mut self, out: &mut [i16]) {
        for sample in out {
            while self.left == 0 {
                self.next_segment();
            }
            self.left -= 1;
            self.done += 1;
            if self.level == 0.0 {
                *sample = 0;
                continue;
            }
            // A 5 ms raised-cosine fade at both ends avoids clicks.
            let fade = (self.rate * 0.005).max(1.0);
            let edge = (self.left.min(self.done) as f64 / fade).min(1.0);
            let envelope = 0.5 - 0.5 * (PI * edge).cos();
            *sample = (self.phase.sin() * self.peak * self.level * envelope).round() as i16;
            self.phase = (self.phase + 2.0 * PI * self.freq / self.rate) % (2.0 * PI);
            self.freq += self.sweep;
        }
    }
}

/// Where a received piece of audio was found in the sent signal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DelayMatch {
    /// How many samples later the piece was received than sent
    /// (sub-sample, by parabolic interpolation of the correlation peak).
    pub delay_samples: f64,
    /// Normalized cross-correlation at the peak, −1.0–1.0: 1.0 is a perfect
    /// (scaled) copy, below about 0.3 the match is doubtful.
    pub score: f64,
}

/// Finds `received[window]` in `sent`, trying delays from 0 to
/// `max_delay` samples: sample `received[j]` is matched with
/// `sent[j - delay]`. Cross-correlation by FFT. `None` when the window is
/// empty, silent, or the sent signal has no samples at any delay tried.
pub fn find_delay(
    sent: &[i16],
    received: &[i16],
    window: Range<usize>,
    max_delay: usize,
) -> Option<DelayMatch> {
    let window = window.start..window.end.min(received.len());
    if window.is_empty() {
        return None;
    }
    let probe = &received[window.clone()];
    // The part of `sent` any delay in 0..=max_delay can reach.
    let s0 = window.start.saturating_sub(max_delay);
    let s1 = window.end.min(sent.len());
    if s1 <= s0 {
        return None;
    }
    let reference = &sent[s0..s1];
    // c[m] = Σ_j probe[j]·reference[j + m]; delay = window.start − s0 − m.
    let n = (reference.len() + probe.len()).next_power_of_two();
    let mut planner = FftPlanner::<f64>::new();
    let forward = planner.plan_fft_forward(n);
    let inverse = planner.plan_fft_inverse(n);
    let complex = |x: &[i16]| {
        let mut v: Vec<Complex<f64>> = x.iter().map(|&s| Complex::new(f64::from(s), 0.0)).collect();
        v.resize(n, Complex::new(0.0, 0.0));
        v
    };
    let mut r = complex(reference);
    let mut p = complex(probe);
    forward.process(&mut r);
    forward.process(&mut p);
    for (a, b) in r.iter_mut().zip(&p) {
        *a *= b.conj();
    }
    inverse.process(&mut r);
    let corr: Vec<f64> = r.iter().map(|c| c.re / n as f64).collect();

    let probe_energy: f64 = probe.iter().map(|&s| f64::from(s).powi(2)).sum();
    if probe_energy == 0.0 {
        return None;
    }
    let mut prefix = Vec::with_capacity(reference.len() + 1);
    prefix.push(0.0);
    for &s in reference {
        prefix.push(prefix.last().copied().unwrap_or(0.0) + f64::from(s).powi(2));
    }
    let ref_energy = |m: usize| {
        let end = (m + probe.len()).min(reference.len());
        prefix[end] - prefix[m.min(end)]
    };
    let offset = window.start - s0;
    let normalized = |m: usize| {
        let e = ref_energy(m);
        if e <= 0.0 {
            0.0
        } else {
            corr[m] / (probe_energy * e).sqrt()
        }
    };
    // Delays 0..=max_delay are m = offset − delay, within 0..reference.len().
    let lo = offset.saturating_sub(max_delay);
    let hi = offset.min(reference.len().saturating_sub(1));
    if lo > hi {
        return None;
    }
    let best = (lo..=hi).max_by(|&a, &b| normalized(a).total_cmp(&normalized(b)))?;
    let score = normalized(best);
    let refine = if best > lo && best < hi {
        let (l, c, r) = (corr[best - 1], corr[best], corr[best + 1]);
        let d = l - 2.0 * c + r;
        if d.abs() > f64::EPSILON {
            (0.5 * (l - r) / d).clamp(-0.5, 0.5)
        } else {
            0.0
        }
    } else {
        0.0
    };
    Some(DelayMatch {
        delay_samples: offset as f64 - (best as f64 + refine),
        score,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sine_has_requested_peak_and_starts_at_zero() {
        let s = sine(1000.0, 0.5, 8000, 8000);
        assert_eq!(s[0], 0);
        // 1 kHz at 8 kHz: sample 2 is the crest.
        assert!((s[2] - 16384).abs() <= 1, "crest {}", s[2]);
        let peak = s.iter().map(|&x| x.abs()).max().unwrap_or(0);
        assert!((peak - 16384).abs() <= 1, "peak {peak}");
    }

    #[test]
    fn tone_generator_continues_phase_across_frames() {
        let whole = sine(440.0, 0.8, 8000, 480);
        let mut generator = ToneGenerator::new(440.0, 0.8, 8000);
        let mut framed = vec![0; 480];
        for chunk in framed.chunks_mut(160) {
            generator.fill(chunk);
        }
        for (a, b) in whole.iter().zip(&framed) {
            assert!((a - b).abs() <= 1);
        }
    }

    #[test]
    fn dominant_frequency_of_1khz_at_8khz_over_1s_is_within_0_1_percent() {
        let f = dominant_frequency(&sine(1000.0, 0.5, 8000, 8000), 8000);
        assert!((f - 1000.0).abs() < 1.0, "measured {f}");
    }

    #[test]
    fn dominant_frequency_finds_off_bin_tones_and_ignores_weaker_ones() {
        let mut s = sine(1234.5, 0.5, 8000, 8000);
        for (x, y) in s.iter_mut().zip(sine(300.0, 0.1, 8000, 8000)) {
            *x += y;
        }
        let f = dominant_frequency(&s, 8000);
        assert!((f - 1234.5).abs() < 1.0, "measured {f}");
        let f = dominant_frequency(&sine(440.0, 0.3, 48000, 4800), 48000);
        assert!((f - 440.0).abs() < 4.4, "measured {f}");
    }

    #[test]
    fn dominant_frequency_of_too_few_samples_is_zero() {
        assert_eq!(dominant_frequency(&[], 8000), 0.0);
        assert_eq!(dominant_frequency(&[5], 8000), 0.0);
    }

    #[test]
    fn rms_dbfs_of_full_scale_sine_is_minus_3_and_halving_is_minus_6() {
        let full = rms_dbfs(&sine(1000.0, 1.0, 8000, 8000));
        assert!((full + 3.01).abs() < 0.01, "full {full}");
        let half = rms_dbfs(&sine(1000.0, 0.5, 8000, 8000));
        assert!((full - half - 6.02).abs() < 0.01, "half {half}");
        assert_eq!(rms_dbfs(&[0; 160]), f64::NEG_INFINITY);
        assert_eq!(rms_dbfs(&[]), f64::NEG_INFINITY);
    }

    #[test]
    fn chirp_sequence_is_reproducible_has_pauses_and_stays_in_band() {
        let mut a = ChirpSequence::new(9, 0.5, 8000);
        let mut b = ChirpSequence::new(9, 0.5, 8000);
        let (mut x, mut y) = (vec![0; 16000], vec![0; 16000]);
        a.fill(&mut x[..7000]);
        a.fill(&mut x[7000..]);
        b.fill(&mut y);
        assert_eq!(x, y, "same seed, same signal, whatever the framing");
        let mut c = ChirpSequence::new(10, 0.5, 8000);
        let mut z = vec![0; 16000];
        c.fill(&mut z);
        assert_ne!(x, z);
        let peak = x.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!(peak > 8000 && peak <= 16384, "peak {peak}");
        let silent_frames = x.chunks(80).filter(|f| f.iter().all(|&s| s == 0)).count();
        assert!(silent_frames > 5, "pauses between spurts");
        let f = dominant_frequency(&x, 8000);
        assert!((300.0..3400.0).contains(&f), "{f} Hz");
    }

    #[test]
    fn find_delay_recovers_a_known_delay_through_noise_and_gaps() {
        let mut sent = vec![0; 24000];
        ChirpSequence::new(1, 0.5, 8000).fill(&mut sent);
        let delay = 563;
        let mut received = vec![0i16; 24000];
        let mut noise = StdRng::seed_from_u64(2);
        for j in delay..received.len() {
            received[j] =
                (f64::from(sent[j - delay]) * 0.7 + noise.random_range(-500.0..500.0)) as i16;
        }
        // A lost 20 ms frame every 200 ms.
        for start in (0..24000).step_by(1600) {
            received[start..start + 160].fill(0);
        }
        let m = find_delay(&sent, &received, 4000..24000, 4000).expect("found");
        assert!((m.delay_samples - delay as f64).abs() < 0.5, "{m:?}");
        assert!(m.score > 0.8 && m.score <= 1.0, "{m:?}");
        // The end of the call alone gives the same answer.
        let m = find_delay(&sent, &received, 16000..24000, 4000).expect("found");
        assert!((m.delay_samples - delay as f64).abs() < 0.5, "{m:?}");
    }

    #[test]
    fn find_delay_interpolates_between_samples_and_rejects_silence() {
        // Half-sample delay by averaging neighbours.
        let mut sent = vec![0; 16000];
        ChirpSequence::new(4, 0.5, 8000).fill(&mut sent);
        let mut received = vec![0i16; 16000];
        for j in 101..16000 {
            received[j] = ((i32::from(sent[j - 100]) + i32::from(sent[j - 101])) / 2) as i16;
        }
        let m = find_delay(&sent, &received, 2000..16000, 1000).expect("found");
        assert!((m.delay_samples - 100.5).abs() < 0.2, "{m:?}");
        assert_eq!(find_delay(&sent, &[0; 16000], 2000..16000, 1000), None);
        assert_eq!(find_delay(&sent, &received, 20000..30000, 1000), None);
        // Unrelated audio matches poorly.
        let mut other = vec![0; 16000];
        ChirpSequence::new(5, 0.5, 8000).fill(&mut other);
        let m = find_delay(&sent, &other, 2000..16000, 1000).expect("computed");
        assert!(m.score < 0.3, "{m:?}");
    }
}
