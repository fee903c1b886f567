//! Choosing a call's audio source and sink from the command line.

use crate::media::audio::{
    AudioError, AudioFormat, AudioSink, DeviceChoice, NullSink, NullSource, WavSink, WavSource,
    open_capture, open_playback,
};
use crate::ua::MediaIo;

use super::args::CommonArgs;

/// `--play` or the microphone (unless `--null-audio`); `--record` or the
/// speaker (unless `--null-audio`).
pub fn open_io(args: &CommonArgs, format: AudioFormat) -> Result<MediaIo, AudioError> {
    let source = match (&args.play, args.null_audio) {
        (Some(path), _) => Box::new(WavSource::open(path, format)?) as _,
        (None, true) => Box::new(NullSource) as _,
        (None, false) => open_capture(&choice(&args.input_device), format)?,
    };
    let sink = match (&args.record, args.null_audio) {
        (Some(path), _) => Box::new(WavSink::create(path, format)?) as _,
        (None, true) => Box::new(NullSink) as _,
        (None, false) => open_playback(&choice(&args.output_device), format)?,
    };
    Ok(MediaIo { source, sink })
}

/// Checks what `open_io` would open for each call, without the default
/// devices' fallback warnings: the `--play` file, the `--record` location
/// and any device named with `--input-device`/`--output-device`.
pub fn check_io(args: &CommonArgs, format: AudioFormat) -> Result<(), AudioError> {
    if let Some(path) = &args.play {
        WavSource::open(path, format)?;
    }
    if let Some(path) = &args.record {
        WavSink::create(path, format)?.finish()?;
    }
    if !args.null_audio {
        if let (None, Some(name)) = (&args.play, &args.input_device) {
            open_capture(&DeviceChoice::Named(name.clone()), format)?;
        }
        if let (None, Some(name)) = (&args.record, &args.output_device) {
            open_playback(&DeviceChoice::Named(name.clone()), format)?;
        }
    }
    Ok(())
}

fn choice(name: &Option<String>) -> DeviceChoice {
    match name {
        Some(n) => n.parse().unwrap_or(DeviceChoice::Default),
        None => DeviceChoice::Default,
    }
}
