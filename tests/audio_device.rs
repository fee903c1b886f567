//! Sound-card endpoints against a virtual ALSA card (see `support/alsa.rs`).
//!
//! Each test runs twice: in the test process it prepares files and checks the result, and in a
//! child process (started with the card's environment) it drives the sipline endpoints.

#[path = "support/alsa.rs"]
mod alsa;

use std::time::{Duration, Instant};

use sipline::media::audio::{
    AudioError, AudioFormat, AudioSink, AudioSource, DeviceChoice, DeviceSink, DeviceSource,
    NO_INPUT_WARNING, NO_OUTPUT_WARNING, open_capture, open_capture_detailed, open_playback,
    open_playback_detailed,
};

const NB: AudioFormat = AudioFormat::NARROWBAND;
/// Where the child writes what it captured (raw S16_LE at 8 kHz).
const CAPTURED_ENV: &str = "SIPLINE_TEST_CAPTURED";

/// The playback pacer process (see `alsa::paced_writer_command`); a no-op as a plain test.
#[test]
fn alsa_pacer() {
    alsa::pacer_entry();
}

/// Calls `tick(i)` every 20 ms, on absolute deadlines, like the media task.
fn every_20ms(frames: u32, mut tick: impl FnMut(u32)) {
    let start = Instant::now();
    for i in 0..frames {
        let due = start + Duration::from_millis(20) * i;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        tick(i);
    }
}

#[test]
fn device_sink_plays_8khz_tone_as_48khz_at_the_same_frequency_and_level() {
    if alsa::is_child() {
        let mut sink = DeviceSink::open(None, NB).expect("open virtual card playback");
        let tone = alsa::sine(8000, 1000.0, 8000.0, 160 * 150);
        every_20ms(150, |i| {
            let i = i as usize;
            sink.write_frame(&tone[i * 160..(i + 1) * 160]).unwrap();
        });
        // Let the queued tail play before stopping.
        std::thread::sleep(Duration::from_millis(100));
        sink.finish().unwrap();
        return;
    }
    let card = alsa::VirtualCard::new();
    let out = card.dir().join("played.raw");
    let env = card.env(
        &alsa::paced_writer_command(&out, "alsa_pacer"),
        std::path::Path::new("/dev/zero"),
    );
    alsa::assert_child_ok(&alsa::run_child(
        "device_sink_plays_8khz_tone_as_48khz_at_the_same_frequency_and_level",
        &env,
    ));

    let played = alsa::read_s16le(&out);
    let span = alsa::active_span(&played, 2000).expect("the tone reached the file");
    // 3 s were written at real time; the device must have played most of it at 48 kHz.
    assert!(
        span.len() > 48_000 * 2,
        "only {} samples of tone out of {}",
        span.len(),
        played.len()
    );
    // Analyse half a second from the middle of the tone.
    let mid = span.start + span.len() / 2;
    let window = &played[mid - 12_000..mid + 12_000];
    let f = alsa::dominant_frequency(window, 48_000);
    assert!((f - 1000.0).abs() <= 20.0, "dominant {f} Hz");
    let level = alsa::rms(window);
    let expected = 8000.0 / 2f64.sqrt();
    eprintln!(
        "played: {} samples, tone over {span:?}, {f} Hz, rms {level:.0}",
        played.len()
    );
    assert!(
        (level - expected).abs() < expected * 0.1,
        "rms {level}, expected {expected}"
    );
}

#[test]
fn device_source_captures_48khz_tone_as_8khz_frames_at_the_same_frequency() {
    if alsa::is_child() {
        let path = std::env::var_os(CAPTURED_ENV).expect("captured path");
        let mut src = DeviceSource::open(None, NB).expect("open virtual card capture");
        let mut captured = Vec::new();
        let mut frame = [0i16; 160];
        every_20ms(150, |_| {
            src.read_frame(&mut frame);
            captured.extend_from_slice(&frame);
        });
        std::fs::write(path, alsa::to_s16le(&captured)).unwrap();
        return;
    }
    let card = alsa::VirtualCard::new();
    let fifo = card.dir().join("mic.fifo");
    alsa::make_fifo(&fifo);
    // Longer than the capture: at the end of its input the file plugin repeats stale data.
    let tone = alsa::sine(48_000, 440.0, 10_000.0, 48_000 * 6);
    let feeder = alsa::FifoFeeder::start(&fifo, alsa::to_s16le(&tone));
    let captured_path = card.dir().join("captured.raw");
    let mut env = card.env("/dev/null", &fifo);
    env.push((CAPTURED_ENV.into(), captured_path.clone().into()));
    let out = alsa::run_child(
        "device_source_captures_48khz_tone_as_8khz_frames_at_the_same_frequency",
        &env,
    );
    drop(feeder);
    alsa::assert_child_ok(&out);

    let captured = alsa::read_s16le(&captured_path);
    assert_eq!(captured.len(), 160 * 150);
    // The last second: well after start-up.
    let last = &captured[captured.len() - 8000..];
    let f = alsa::dominant_frequency(last, 8000);
    assert!((f - 440.0).abs() <= 8.8, "dominant {f} Hz");
    let level = alsa::rms(last);
    let expected = 10_000.0 / 2f64.sqrt();
    let span = alsa::active_span(&captured, 2000);
    eprintln!("captured: tone over {span:?}, last second {f} Hz, rms {level:.0}");
    assert!(
        (level - expected).abs() < expected * 0.1,
        "rms {level}, expected {expected}"
    );
}

#[test]
fn without_a_sound_card_default_falls_back_to_null_with_one_warning_and_named_fails() {
    if alsa::is_child() {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .init();
        let detailed = open_playback_detailed(&DeviceChoice::Default, NB).unwrap();
        assert!(detailed.fallback.is_some(), "expected a fallback");
        let mut sink = open_playback(&DeviceChoice::Default, NB).expect("fallback to null");
        sink.write_frame(&[0; 160]).unwrap();
        sink.finish().unwrap();
        let mut src = open_capture(&DeviceChoice::Default, NB).expect("fallback to null");
        let mut frame = [1i16; 160];
        src.read_frame(&mut frame);
        assert_eq!(frame, [0; 160]);
        assert!(
            open_capture_detailed(&DeviceChoice::Default, NB)
                .unwrap()
                .fallback
                .is_some()
        );

        let named = open_playback(&DeviceChoice::Named("nope".into()), NB).err();
        assert!(
            matches!(named, Some(AudioError::DeviceNotFound { ref name, .. }) if name == "nope"),
            "{named:?}"
        );
        assert!(open_capture(&DeviceChoice::Named("nope".into()), NB).is_err());
        return;
    }
    let card = alsa::VirtualCard::without_devices();
    let env = card.env("/dev/null", std::path::Path::new("/dev/zero"));
    let out = alsa::run_child(
        "without_a_sound_card_default_falls_back_to_null_with_one_warning_and_named_fails",
        &env,
    );
    alsa::assert_child_ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches(NO_OUTPUT_WARNING).count(),
        1,
        "stderr:\n{stderr}"
    );
    assert_eq!(
        stderr.matches(NO_INPUT_WARNING).count(),
        1,
        "stderr:\n{stderr}"
    );
    assert!(
        !stderr.contains("ALSA lib"),
        "alsa-lib noise leaked:\n{stderr}"
    );
}

#[test]
fn virtual_card_lists_its_default_device() {
    if alsa::is_child() {
        let devices = sipline::media::audio::list_devices().unwrap();
        println!("DEVICES {devices:?}");
        assert!(
            devices
                .iter()
                .any(|d| d.id.ends_with("default") && d.output),
            "{devices:?}"
        );
        // A listed name opens as a named device.
        let default = devices.iter().find(|d| d.id.ends_with("default")).unwrap();
        for name in [default.id.as_str(), default.name.as_str(), "default"] {
            let mut sink = open_playback(&DeviceChoice::Named(name.into()), NB).unwrap();
            sink.finish().unwrap();
        }
        return;
    }
    let card = alsa::VirtualCard::new();
    let env = card.env("/dev/null", std::path::Path::new("/dev/zero"));
    let out = alsa::run_child("virtual_card_lists_its_default_device", &env);
    alsa::assert_child_ok(&out);
}

#[test]
fn capture_that_is_not_read_keeps_only_the_newest_audio() {
    if alsa::is_child() {
        let mut src = DeviceSource::open(None, NB).expect("open virtual card capture");
        // An unpaced input file: the device delivers far faster than real time.
        std::thread::sleep(Duration::from_millis(300));
        let mut frame = [0i16; 160];
        src.read_frame(&mut frame);
        assert!(src.dropped_samples() > 0, "nothing dropped");
        assert!(frame.iter().any(|&s| s != 0), "no audio after the overflow");
        return;
    }
    let card = alsa::VirtualCard::new();
    let input = card.dir().join("mic.raw");
    let tone = alsa::sine(48_000, 440.0, 10_000.0, 48_000 * 30);
    std::fs::write(&input, alsa::to_s16le(&tone)).unwrap();
    let env = card.env("/dev/null", &input);
    alsa::assert_child_ok(&alsa::run_child(
        "capture_that_is_not_read_keeps_only_the_newest_audio",
        &env,
    ));
}
