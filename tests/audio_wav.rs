//! WAV sources and sinks: format conversion on the way in, crash-safe files on the way out.

#[path = "support/alsa.rs"]
mod alsa;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use hound::{SampleFormat, WavReader, WavSpec, WavWriter};
use sipline::media::audio::{AudioError, AudioFormat, AudioSink, AudioSource, WavSink, WavSource};

const NB: AudioFormat = AudioFormat::NARROWBAND;

/// Reads frames until the source finishes (bounded), returning the samples and frame count.
fn drain(src: &mut WavSource, frame: usize, max_frames: usize) -> (Vec<i16>, usize) {
    let mut out = Vec::new();
    let mut buf = vec![0i16; frame];
    let mut frames = 0;
    while !src.is_finished() && frames < max_frames {
        src.read_frame(&mut buf);
        out.extend_from_slice(&buf);
        frames += 1;
    }
    (out, frames)
}

fn tone(rate: u32, freq: f64, n: usize) -> f64 {
    (2.0 * std::f64::consts::PI * freq * n as f64 / f64::from(rate)).sin()
}

#[test]
fn stereo_float_48khz_file_becomes_8khz_mono_frames_with_the_same_tone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stereo.wav");
    let spec = WavSpec {
        channels: 2,
        sample_rate: 48_000,
        bits_per_sample: 32,
        sample_format: SampleFormat::Float,
    };
    let mut w = WavWriter::create(&path, spec).unwrap();
    for n in 0..48_000 {
        let s = tone(48_000, 1000.0, n);
        w.write_sample((0.6 * s) as f32).unwrap();
        w.write_sample((0.2 * s) as f32).unwrap();
    }
    w.finalize().unwrap();

    let mut src = WavSource::open(&path, NB).unwrap();
    let (pcm, frames) = drain(&mut src, 160, 1000);
    // One second at 8 kHz is exactly 50 frames of 160.
    assert_eq!(frames, 50);
    assert!(src.is_finished());
    let middle = &pcm[2000..6000];
    let f = alsa::dominant_frequency(middle, 8000);
    assert!((f - 1000.0).abs() <= 20.0, "dominant {f} Hz");
    // Channels are averaged: (0.6 + 0.2) / 2 = 0.4 of full scale.
    let expected = 0.4 * 32768.0 / 2f64.sqrt();
    let level = alsa::rms(middle);
    assert!((level - expected).abs() < expected * 0.03, "rms {level}");
}

#[test]
fn mono_16bit_8khz_file_passes_through_bit_exact_then_silence() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nb.wav");
    let spec = WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: SampleFormat::Int,
    };
    let samples: Vec<i16> = (0..1000)
        .map(|n| ((n * 7919) % 65536 - 32768) as i16)
        .collect();
    let mut w = WavWriter::create(&path, spec).unwrap();
    for &s in &samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();

    let mut src = WavSource::open(&path, NB).unwrap();
    let (pcm, frames) = drain(&mut src, 160, 100);
    assert_eq!(frames, 7); // ceil(1000 / 160)
    assert_eq!(&pcm[..1000], &samples[..]);
    assert!(pcm[1000..].iter().all(|&s| s == 0));
    // After the end the source keeps yielding silence.
    let mut frame = [5i16; 160];
    src.read_frame(&mut frame);
    assert_eq!(frame, [0; 160]);
}

#[test]
fn integer_files_of_every_width_are_converted() {
    for bits in [8u16, 16, 24, 32] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("int{bits}.wav"));
        let spec = WavSpec {
            channels: 2,
            sample_rate: 44_100,
            bits_per_sample: bits,
            sample_format: SampleFormat::Int,
        };
        let full = f64::from((1u32 << (bits - 1)) as f32) - 1.0;
        let mut w = WavWriter::create(&path, spec).unwrap();
        for n in 0..44_100 {
            let s = (0.5 * full * tone(44_100, 440.0, n)).round() as i32;
            w.write_sample(s).unwrap();
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();

        let mut src = WavSource::open(&path, NB).unwrap();
        let (pcm, frames) = drain(&mut src, 160, 1000);
        assert_eq!(frames, 50, "{bits}-bit");
        let middle = &pcm[2000..6000];
        let f = alsa::dominant_frequency(middle, 8000);
        assert!((f - 440.0).abs() <= 8.8, "{bits}-bit: dominant {f} Hz");
        let expected = 0.5 * 32768.0 / 2f64.sqrt();
        let level = alsa::rms(middle);
        assert!(
            (level - expected).abs() < expected * 0.05,
            "{bits}-bit: rms {level}"
        );
    }
}

#[test]
fn corrupt_missing_and_unsupported_files_are_typed_errors_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wav");
    std::fs::write(&junk, [0x55u8; 100]).unwrap();
    let missing = dir.path().join("missing.wav");
    // A float file with 64-bit samples: a valid header hound does not decode.
    let f64_wav = dir.path().join("f64.wav");
    std::fs::write(&f64_wav, wav_header(3, 1, 8000, 64, 16)).unwrap();

    for path in [&junk, &missing, &f64_wav] {
        let err = WavSource::open(path, NB).err().expect("open must fail");
        assert!(
            matches!(
                &err,
                AudioError::WavOpen { path: p, .. } | AudioError::WavUnsupported { path: p, .. }
                    if p == path
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
    }
}

#[test]
fn truncated_file_plays_what_it_has_and_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short.wav");
    // Header announces 16000 bytes of data; only 400 bytes (200 samples) follow.
    let mut bytes = wav_header(1, 1, 8000, 16, 16_000);
    bytes.extend(std::iter::repeat_n([0x10u8, 0x00], 200).flatten());
    std::fs::write(&path, bytes).unwrap();

    let mut src = WavSource::open(&path, NB).unwrap();
    let (pcm, frames) = drain(&mut src, 160, 1000);
    assert_eq!(frames, 2);
    assert!(pcm[..200].iter().all(|&s| s == 16));
    assert!(pcm[200..].iter().all(|&s| s == 0));
}

/// A canonical 44-byte WAV header.
fn wav_header(format_tag: u16, channels: u16, rate: u32, bits: u16, data_len: u32) -> Vec<u8> {
    let block = channels * bits / 8;
    let mut h = Vec::new();
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&(36 + data_len).to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&format_tag.to_le_bytes());
    h.extend_from_slice(&channels.to_le_bytes());
    h.extend_from_slice(&rate.to_le_bytes());
    h.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
    h.extend_from_slice(&block.to_le_bytes());
    h.extend_from_slice(&bits.to_le_bytes());
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data_len.to_le_bytes());
    h
}

fn read_wav(path: &Path) -> (WavSpec, Vec<i16>) {
    let mut r = WavReader::open(path).expect("file is a valid WAV");
    let spec = r.spec();
    let samples = r.samples::<i16>().map(|s| s.unwrap()).collect();
    (spec, samples)
}

#[test]
fn sink_file_is_valid_mid_recording_and_complete_after_finish() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec.wav");
    let pcm = alsa::sine(8000, 700.0, 9000.0, 160 * 125);
    let mut sink = WavSink::create(&path, NB).unwrap();
    for frame in pcm.chunks(160).take(60) {
        sink.write_frame(frame).unwrap();
    }
    // 1.2 s written, not finalized: the header written at 1 s makes a valid file.
    let (spec, mid) = read_wav(&path);
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (1, 8000, 16)
    );
    assert_eq!(mid.len(), 8000);
    assert_eq!(&mid[..], &pcm[..8000]);

    for frame in pcm.chunks(160).skip(60) {
        sink.write_frame(frame).unwrap();
    }
    sink.finish().unwrap();
    let (_, all) = read_wav(&path);
    assert_eq!(all, pcm);
}

/// Child half of the kill test: records 1.5 s, says so, then waits to be killed.
#[test]
fn sink_file_survives_sigkill_up_to_the_last_second() {
    if let Some(path) = std::env::var_os("SIPLINE_TEST_WAV_KILL") {
        let mut sink = WavSink::create(path, NB).unwrap();
        let pcm = alsa::sine(8000, 500.0, 5000.0, 12_000);
        for frame in pcm.chunks(160) {
            sink.write_frame(frame).unwrap();
        }
        println!("RECORDED");
        std::thread::sleep(std::time::Duration::from_secs(60));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("killed.wav");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "sink_file_survives_sigkill_up_to_the_last_second",
            "--exact",
            "--nocapture",
        ])
        .env("SIPLINE_TEST_WAV_KILL", &path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let recorded = BufReader::new(stdout)
        .lines()
        .any(|l| l.is_ok_and(|l| l.contains("RECORDED")));
    child.kill().unwrap(); // SIGKILL: no destructor runs
    child.wait().unwrap();
    assert!(recorded, "child did not record");
    let (_, samples) = read_wav(&path);
    assert_eq!(samples.len(), 8000);
    assert_eq!(samples, alsa::sine(8000, 500.0, 5000.0, 8000));
}
