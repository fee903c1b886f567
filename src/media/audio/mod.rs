//! Audio I/O: sound card (cpal), WAV files (hound) and silence.
//!
//! The call's media task ticks every 20 ms: it asks its [`AudioSource`] for one frame of
//! [`AudioFormat::frame_samples`] mono 16-bit samples at [`AudioFormat::rate`] and hands one
//! decoded frame to its [`AudioSink`]. Both traits are object safe so the task holds
//! `Box<dyn AudioSource>` / `Box<dyn AudioSink>` and never knows what is behind them:
//!
//! - [`WavSource`] / [`WavSink`]: play a file into the call, record the call to a file;
//! - [`DeviceSource`] / [`DeviceSink`]: the sound card, through `cpal`, on a thread of their
//!   own with a bounded buffer between that thread and the media task;
//! - [`NullSource`] / [`NullSink`]: silence and the bit bucket.
//!
//! [`open_playback`] and [`open_capture`] apply the device policy: with
//! [`DeviceChoice::Default`] and no working sound card the call goes on silently (one warning
//! line); a [`DeviceChoice::Named`] device that cannot be opened is an error.
//!
//! Everything here may block, spawn threads or read the clock; nothing here is sans-IO.

mod device;
mod error;
mod null;
mod resample;
mod wav;

use std::time::Duration;

pub use device::{DeviceInfo, DeviceSink, DeviceSource, list_devices};
pub use error::{AudioError, Direction};
pub use null::{NullSink, NullSource};
pub use resample::FrameResampler;
pub use wav::{WavSink, WavSource};

/// The frames the media engine exchanges with sources and sinks: mono, 16-bit, `rate` Hz,
/// `frame_samples` samples per frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AudioFormat {
    /// Samples per second (the codec's clock rate).
    pub rate: u32,
    /// Samples in one frame (20 ms: 160 at 8 kHz, 960 at 48 kHz).
    pub frame_samples: usize,
}

impl AudioFormat {
    /// G.711: 8 kHz, 20 ms frames (RFC 3551 §4.5.14, default packetization §4.2).
    pub const NARROWBAND: AudioFormat = AudioFormat::with_ptime(8000, 20);
    /// Opus: 48 kHz, 20 ms frames (RFC 7587 §4.1).
    pub const FULLBAND: AudioFormat = AudioFormat::with_ptime(48000, 20);

    /// The format of a call's audio source and sink, chosen before the codec is negotiated:
    /// [`FULLBAND`](Self::FULLBAND) when Opus may be used, so an Opus call carries 48 kHz
    /// audio end to end; [`NARROWBAND`](Self::NARROWBAND) for G.711 only, so such calls run
    /// at 8 kHz exactly as the codec does. A call whose codec runs at another rate is
    /// converted at the edge with a [`FrameResampler`].
    pub fn for_codecs(codecs: &[crate::media::codec::CodecKind]) -> AudioFormat {
        let rate = codecs.iter().map(|c| c.pcm_rate()).max().unwrap_or(8000);
        AudioFormat::with_ptime(rate, 20)
    }

    /// Frames of `ptime_ms` milliseconds at `rate` Hz.
    pub const fn with_ptime(rate: u32, ptime_ms: u32) -> Self {
        AudioFormat {
            rate,
            frame_samples: (rate as usize * ptime_ms as usize) / 1000,
        }
    }

    /// Duration of one frame.
    pub fn frame_duration(&self) -> Duration {
        if self.rate == 0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(self.frame_samples as f64 / f64::from(self.rate))
    }

    /// Checks that the format describes actual audio.
    pub fn validate(&self) -> Result<(), AudioError> {
        if self.rate == 0 || self.frame_samples == 0 {
            return Err(AudioError::InvalidFormat {
                rate: self.rate,
                frame_samples: self.frame_samples,
            });
        }
        Ok(())
    }
}

/// Where the call's outgoing audio comes from.
pub trait AudioSource: Send {
    /// Fills `out` (one frame) with the next samples. Never blocks for long and never fails:
    /// a source with nothing to give (underrun, end of file, dead device) yields silence.
    fn read_frame(&mut self, out: &mut [i16]);

    /// True once the source has delivered everything it will ever deliver (end of a file).
    /// Live sources never finish.
    fn is_finished(&self) -> bool {
        false
    }
}

/// Where the call's incoming audio goes.
pub trait AudioSink: Send {
    /// Takes one frame of decoded audio.
    fn write_frame(&mut self, pcm: &[i16]) -> Result<(), AudioError>;

    /// Ends the output: finalizes a file, stops a device. Calling it twice is harmless.
    fn finish(&mut self) -> Result<(), AudioError>;
}

impl<T: AudioSource + ?Sized> AudioSource for Box<T> {
    fn read_frame(&mut self, out: &mut [i16]) {
        (**self).read_frame(out);
    }

    fn is_finished(&self) -> bool {
        (**self).is_finished()
    }
}

impl<T: AudioSink + ?Sized> AudioSink for Box<T> {
    fn write_frame(&mut self, pcm: &[i16]) -> Result<(), AudioError> {
        (**self).write_frame(pcm)
    }

    fn finish(&mut self) -> Result<(), AudioError> {
        (**self).finish()
    }
}

/// Which sound device the user asked for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum DeviceChoice {
    /// The system's default device; silently fall back to no audio if there is none.
    #[default]
    Default,
    /// A device by its name or id (as shown by [`list_devices`]); missing is an error.
    Named(String),
    /// No device at all.
    None,
}

impl std::str::FromStr for DeviceChoice {
    type Err = std::convert::Infallible;

    /// `default` → [`DeviceChoice::Default`], `none` or `null` → [`DeviceChoice::None`],
    /// anything else names a device.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "" | "default" => DeviceChoice::Default,
            "none" | "null" => DeviceChoice::None,
            name => DeviceChoice::Named(name.to_owned()),
        })
    }
}

/// An endpoint opened according to a [`DeviceChoice`].
pub struct Opened<T: ?Sized> {
    /// The source or sink to use.
    pub endpoint: Box<T>,
    /// Why the default device was replaced by silence, if it was.
    pub fallback: Option<AudioError>,
}

/// The warning logged once when the default output device is unusable.
pub const NO_OUTPUT_WARNING: &str = "no sound card: continuing without audio output";
/// The warning logged once when the default input device is unusable.
pub const NO_INPUT_WARNING: &str = "no sound card: continuing without audio input";

/// Opens the speaker side per `choice`, reporting a fallback to [`NullSink`] instead of
/// logging it.
pub fn open_playback_detailed(
    choice: &DeviceChoice,
    format: AudioFormat,
) -> Result<Opened<dyn AudioSink>, AudioError> {
    format.validate()?;
    let opened = match choice {
        DeviceChoice::None => Ok(Box::new(NullSink) as Box<dyn AudioSink>),
        DeviceChoice::Default => DeviceSink::open(None, format).map(|s| Box::new(s) as _),
        DeviceChoice::Named(name) => {
            return DeviceSink::open(Some(name), format).map(|s| Opened {
                endpoint: Box::new(s) as _,
                fallback: None,
            });
        }
    };
    Ok(match opened {
        Ok(endpoint) => Opened {
            endpoint,
            fallback: None,
        },
        Err(error) => Opened {
            endpoint: Box::new(NullSink),
            fallback: Some(error),
        },
    })
}

/// Opens the microphone side per `choice`, reporting a fallback to [`NullSource`] instead of
/// logging it.
pub fn open_capture_detailed(
    choice: &DeviceChoice,
    format: AudioFormat,
) -> Result<Opened<dyn AudioSource>, AudioError> {
    format.validate()?;
    let opened = match choice {
        DeviceChoice::None => Ok(Box::new(NullSource) as Box<dyn AudioSource>),
        DeviceChoice::Default => DeviceSource::open(None, format).map(|s| Box::new(s) as _),
        DeviceChoice::Named(name) => {
            return DeviceSource::open(Some(name), format).map(|s| Opened {
                endpoint: Box::new(s) as _,
                fallback: None,
            });
        }
    };
    Ok(match opened {
        Ok(endpoint) => Opened {
            endpoint,
            fallback: None,
        },
        Err(error) => Opened {
            endpoint: Box::new(NullSource),
            fallback: Some(error),
        },
    })
}

/// Opens the speaker side for the CLI: an unusable default device becomes a [`NullSink`] and
/// one warning line ([`NO_OUTPUT_WARNING`]); a named device that fails is an error.
pub fn open_playback(
    choice: &DeviceChoice,
    format: AudioFormat,
) -> Result<Box<dyn AudioSink>, AudioError> {
    let opened = open_playback_detailed(choice, format)?;
    if let Some(reason) = &opened.fallback {
        tracing::warn!(%reason, "{NO_OUTPUT_WARNING}");
    }
    Ok(opened.endpoint)
}

/// Opens the microphone side for the CLI: an unusable default device becomes a
/// [`NullSource`] and one warning line ([`NO_INPUT_WARNING`]); a named device that fails is an
/// error.
pub fn open_capture(
    choice: &DeviceChoice,
    format: AudioFormat,
) -> Result<Box<dyn AudioSource>, AudioError> {
    let opened = open_capture_detailed(choice, format)?;
    if let Some(reason) = &opened.fallback {
        tracing::warn!(%reason, "{NO_INPUT_WARNING}");
    }
    Ok(opened.endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_formats_hold_twenty_milliseconds() {
        assert_eq!(AudioFormat::NARROWBAND.frame_samples, 160);
        assert_eq!(AudioFormat::FULLBAND.frame_samples, 960);
        assert_eq!(
            AudioFormat::NARROWBAND.frame_duration(),
            Duration::from_millis(20)
        );
    }

    #[test]
    fn device_choice_parses_default_none_and_names() {
        assert_eq!("default".parse(), Ok(DeviceChoice::Default));
        assert_eq!("none".parse(), Ok(DeviceChoice::None));
        assert_eq!(
            "hw:CARD=PCH".parse(),
            Ok(DeviceChoice::Named("hw:CARD=PCH".into()))
        );
    }

    #[test]
    fn choosing_no_device_gives_null_endpoints_without_fallback() {
        let sink = open_playback_detailed(&DeviceChoice::None, AudioFormat::NARROWBAND).unwrap();
        assert!(sink.fallback.is_none());
        let src = open_capture_detailed(&DeviceChoice::None, AudioFormat::NARROWBAND).unwrap();
        assert!(src.fallback.is_none());
    }

    #[test]
    fn boxed_endpoints_are_sources_and_sinks_themselves() {
        let mut src: Box<dyn AudioSource> = Box::new(NullSource);
        let mut frame = [1i16; 4];
        src.read_frame(&mut frame);
        assert_eq!(frame, [0; 4]);
        let mut sink: Box<dyn AudioSink> = Box::new(NullSink);
        sink.write_frame(&frame).unwrap();
    }
}
