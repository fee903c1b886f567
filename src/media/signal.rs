//! Test signals and their measurement: sine tones, the dominant frequency of
//! a recording, and its level in dBFS. Used by the loopback report and by
//! tests; pure functions, no I/O.

use std::f64::consts::PI;

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
}
