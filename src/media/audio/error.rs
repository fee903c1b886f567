//! Errors of the audio endpoints: files, sound devices and resampling.

use std::fmt;
use std::path::PathBuf;

/// Which way audio flows through a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Microphone side: the device produces audio for the call.
    Capture,
    /// Speaker side: the device plays the call's audio.
    Playback,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Capture => "input",
            Direction::Playback => "output",
        })
    }
}

/// Everything that can go wrong opening or driving an audio source or sink.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// The frame format itself is unusable (zero rate or zero-length frames).
    #[error("invalid audio format: {rate} Hz with {frame_samples} samples per frame")]
    InvalidFormat { rate: u32, frame_samples: usize },

    /// A WAV file could not be opened or its header is corrupt or unsupported.
    #[error("cannot read WAV file {}: {source}", path.display())]
    WavOpen {
        path: PathBuf,
        #[source]
        source: hound::Error,
    },

    /// A WAV file declares a sample layout we cannot convert.
    #[error(
        "unsupported WAV file {}: {channels} channel(s), {bits}-bit {kind:?} at {rate} Hz",
        path.display()
    )]
    WavUnsupported {
        path: PathBuf,
        channels: u16,
        bits: u16,
        kind: hound::SampleFormat,
        rate: u32,
    },

    /// A WAV file could not be created.
    #[error("cannot create WAV file {}: {source}", path.display())]
    WavCreate {
        path: PathBuf,
        #[source]
        source: hound::Error,
    },

    /// Writing, flushing or finalizing a WAV file failed.
    #[error("cannot write WAV file {}: {source}", path.display())]
    WavWrite {
        path: PathBuf,
        #[source]
        source: hound::Error,
    },

    /// The sink was already finished.
    #[error("audio sink already finished")]
    SinkFinished,

    /// No resampler exists for this pair of rates.
    #[error("cannot resample from {from} Hz to {to} Hz: {source}")]
    Resampler {
        from: u32,
        to: u32,
        #[source]
        source: rubato::ResamplerConstructionError,
    },

    /// The audio host could not list its devices.
    #[error("cannot list audio devices: {source}")]
    Enumerate {
        #[source]
        source: cpal::Error,
    },

    /// The host has no default device in this direction.
    #[error("no default audio {direction} device")]
    NoDefaultDevice { direction: Direction },

    /// No device carries the requested name.
    #[error("no audio {direction} device named {name:?}")]
    DeviceNotFound { direction: Direction, name: String },

    /// The device exists but could not be opened or started.
    #[error("cannot open audio {direction} device {device:?}: {source}")]
    DeviceOpen {
        direction: Direction,
        device: String,
        #[source]
        source: cpal::Error,
    },

    /// The device offers no configuration we can use.
    #[error("audio {direction} device {device:?} offers no usable configuration")]
    NoUsableConfig {
        direction: Direction,
        device: String,
    },

    /// The thread that owns the device stream could not be started or died while opening.
    #[error("audio {direction} thread failed: {source}")]
    DeviceThread {
        direction: Direction,
        #[source]
        source: std::io::Error,
    },

    /// The device stream reported an error and stopped.
    #[error("audio {direction} device {device:?} stopped: {source}")]
    DeviceFailed {
        direction: Direction,
        device: String,
        #[source]
        source: cpal::Error,
    },
}
