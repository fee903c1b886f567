//! The sound card through `cpal`: [`DeviceSink`] (speaker) and [`DeviceSource`] (microphone).
//!
//! Each endpoint spawns one thread that opens the device, builds and starts the cpal stream
//! and keeps it alive until the endpoint is dropped or finished (cpal streams are not `Send`
//! on every platform, and ALSA's error handler is per thread). The stream callback and the
//! media task share a mono 16-bit ring at the device's rate behind a mutex:
//!
//! - playback: [`DeviceSink::write_frame`] resamples the call's frame to the device rate and
//!   appends it; the callback copies it to every channel. The callback starts playing once
//!   [`PREFILL`] is queued, plays zeros on underrun and waits for the prefill again; the
//!   writer drops the oldest samples beyond [`MAX_BUFFERED`] so the delay cannot grow.
//! - capture: the callback mixes the channels to mono and appends; [`DeviceSource::read_frame`]
//!   takes everything, resamples it to the call's rate and hands out one frame, or silence
//!   if a whole frame is not there yet. Both sides keep at most [`MAX_BUFFERED`].
//!
//! The device is opened at 48 kHz with the fewest channels offered (mono if possible), else in
//! its default configuration, asking for 20 ms periods (`BufferSize::Fixed`) and falling back
//! to the device's default buffer size if that is refused.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{
    BufferSize, DeviceDirection, ErrorKind, FromSample, Sample, SampleFormat, SizedSample,
    SupportedBufferSize, SupportedStreamConfig, SupportedStreamConfigRange,
};

use super::resample::MonoResampler;
use super::{AudioError, AudioFormat, AudioSink, AudioSource, Direction};

/// The rate we ask the device for: plug-in resampling inside ALSA glitches, ours does not.
const PREFERRED_RATE: u32 = 48_000;
/// Most audio kept between the media task and the device, in either direction.
pub const MAX_BUFFERED: Duration = Duration::from_millis(200);
/// Audio queued before playback starts (or restarts after an underrun).
pub const PREFILL: Duration = Duration::from_millis(40);
/// How long cpal may take to set a stream up.
const OPEN_TIMEOUT: Duration = Duration::from_secs(3);

/// A sound device as listed by [`list_devices`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Stable identifier, e.g. `alsa:default`; accepted by [`super::DeviceChoice::Named`].
    pub id: String,
    /// Human-readable name; also accepted by [`super::DeviceChoice::Named`].
    pub name: String,
    /// The device can record.
    pub input: bool,
    /// The device can play.
    pub output: bool,
}

/// Lists the host's sound devices. Directions come from the host's metadata; a device whose
/// direction is unknown is listed as both.
pub fn list_devices() -> Result<Vec<DeviceInfo>, AudioError> {
    on_quiet_thread(|| {
        let host = cpal::default_host();
        let devices = host
            .devices()
            .map_err(|source| AudioError::Enumerate { source })?;
        Ok(devices
            .map(|d| {
                let (input, output) = match d.description().map(|desc| desc.direction()) {
                    Ok(DeviceDirection::Input) => (true, false),
                    Ok(DeviceDirection::Output) => (false, true),
                    _ => (true, true),
                };
                DeviceInfo {
                    id: device_id(&d),
                    name: device_name(&d),
                    input,
                    output,
                }
            })
            .collect())
    })
    .unwrap_or_else(|source| {
        Err(AudioError::DeviceThread {
            direction: Direction::Playback,
            source,
        })
    })
}

/// What the opened stream looks like.
#[derive(Clone, Debug)]
struct StreamShape {
    device: String,
    rate: u32,
    channels: u16,
}

/// State shared by the stream callback and the endpoint.
struct Shared {
    ring: Mutex<Ring>,
    /// First fatal error reported by the stream.
    failure: Mutex<Option<cpal::Error>>,
}

struct Ring {
    samples: VecDeque<i16>,
    /// Playback only: the callback is draining (false while waiting for the prefill).
    playing: bool,
    underruns: u64,
    /// Samples dropped because more than [`MAX_BUFFERED`] was queued.
    dropped: u64,
}

impl Ring {
    /// Appends `samples`, then drops the oldest so that at most `max` remain: a producer
    /// running ahead of its consumer costs old audio, never extra delay.
    fn push_bounded(&mut self, samples: impl IntoIterator<Item = i16>, max: usize) {
        self.samples.extend(samples);
        let excess = self.samples.len().saturating_sub(max);
        self.samples.drain(..excess);
        self.dropped += excess as u64;
    }
}

impl Shared {
    fn new() -> Arc<Self> {
        Arc::new(Shared {
            ring: Mutex::new(Ring {
                samples: VecDeque::new(),
                playing: false,
                underruns: 0,
                dropped: 0,
            }),
            failure: Mutex::new(None),
        })
    }

    fn ring(&self) -> MutexGuard<'_, Ring> {
        // A panic while holding the lock leaves plain samples behind: keep using them.
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take_failure(&self) -> Option<cpal::Error> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

/// The thread that owns a cpal stream; dropping it stops the stream.
struct StreamThread {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl StreamThread {
    fn stop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            // The thread only waits for the stop signal and drops the stream.
            let _ = thread.join();
        }
    }
}

impl Drop for StreamThread {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Plays the call's audio on a sound device.
pub struct DeviceSink {
    shared: Arc<Shared>,
    shape: StreamShape,
    resampler: MonoResampler,
    converted: Vec<i16>,
    max_buffered: usize,
    thread: StreamThread,
    failed: bool,
}

impl DeviceSink {
    /// Opens the default output device (`name == None`) or the one whose id or name is `name`.
    pub fn open(name: Option<&str>, format: AudioFormat) -> Result<Self, AudioError> {
        format.validate()?;
        let shared = Shared::new();
        let (thread, shape) = spawn_stream(Direction::Playback, name, shared.clone())?;
        let resampler = MonoResampler::new(format.rate, shape.rate, format.frame_samples).map_err(
            |source| AudioError::Resampler {
                from: format.rate,
                to: shape.rate,
                source,
            },
        )?;
        tracing::debug!(device = %shape.device, rate = shape.rate, channels = shape.channels,
            "audio output opened");
        Ok(DeviceSink {
            shared,
            max_buffered: samples_in(MAX_BUFFERED, shape.rate),
            shape,
            resampler,
            converted: Vec::new(),
            thread,
            failed: false,
        })
    }

    /// The device's name as cpal reports it.
    pub fn device_name(&self) -> &str {
        &self.shape.device
    }

    /// Times playback ran dry so far.
    pub fn underruns(&self) -> u64 {
        self.shared.ring().underruns
    }

    /// Samples dropped so far because the writer ran more than [`MAX_BUFFERED`] ahead.
    pub fn dropped_samples(&self) -> u64 {
        self.shared.ring().dropped
    }
}

impl AudioSink for DeviceSink {
    /// Queues one frame. After the device fails, returns [`AudioError::DeviceFailed`] once and
    /// then discards frames.
    fn write_frame(&mut self, pcm: &[i16]) -> Result<(), AudioError> {
        if self.failed {
            return Ok(());
        }
        if let Some(source) = self.shared.take_failure() {
            self.failed = true;
            return Err(AudioError::DeviceFailed {
                direction: Direction::Playback,
                device: self.shape.device.clone(),
                source,
            });
        }
        self.resampler.push_i16(pcm);
        self.converted.resize(self.resampler.available(), 0);
        self.resampler.pop_into(&mut self.converted);
        let mut ring = self.shared.ring();
        ring.push_bounded(self.converted.iter().copied(), self.max_buffered);
        Ok(())
    }

    fn finish(&mut self) -> Result<(), AudioError> {
        self.thread.stop();
        Ok(())
    }
}

/// Records the call's audio from a sound device.
pub struct DeviceSource {
    shared: Arc<Shared>,
    shape: StreamShape,
    resampler: MonoResampler,
    captured: Vec<i16>,
    max_converted: usize,
    _thread: StreamThread,
    failed: bool,
}

impl DeviceSource {
    /// Opens the default input device (`name == None`) or the one whose id or name is `name`.
    pub fn open(name: Option<&str>, format: AudioFormat) -> Result<Self, AudioError> {
        format.validate()?;
        let shared = Shared::new();
        let (thread, shape) = spawn_stream(Direction::Capture, name, shared.clone())?;
        let resampler = MonoResampler::new(
            shape.rate,
            format.rate,
            samples_in(Duration::from_millis(20), shape.rate),
        )
        .map_err(|source| AudioError::Resampler {
            from: shape.rate,
            to: format.rate,
            source,
        })?;
        tracing::debug!(device = %shape.device, rate = shape.rate, channels = shape.channels,
            "audio input opened");
        Ok(DeviceSource {
            shared,
            shape,
            resampler,
            captured: Vec::new(),
            max_converted: samples_in(MAX_BUFFERED, format.rate),
            _thread: thread,
            failed: false,
        })
    }

    /// The device's name as cpal reports it.
    pub fn device_name(&self) -> &str {
        &self.shape.device
    }

    /// Samples dropped so far because the reader fell more than [`MAX_BUFFERED`] behind.
    pub fn dropped_samples(&self) -> u64 {
        self.shared.ring().dropped
    }
}

impl AudioSource for DeviceSource {
    fn read_frame(&mut self, out: &mut [i16]) {
        if !self.failed
            && let Some(error) = self.shared.take_failure()
        {
            self.failed = true;
            tracing::warn!(device = %self.shape.device, %error,
                "audio input stopped; sending silence");
        }
        {
            let mut ring = self.shared.ring();
            self.captured.clear();
            self.captured.extend(ring.samples.drain(..));
        }
        self.resampler.push_i16(&self.captured);
        self.resampler.keep_newest(self.max_converted);
        if self.resampler.available() >= out.len() {
            self.resampler.pop_into(out);
        } else {
            out.fill(0);
        }
    }
}

fn samples_in(duration: Duration, rate: u32) -> usize {
    (duration.as_secs_f64() * f64::from(rate)).round() as usize
}

/// Spawns the thread that opens the device and owns its stream; returns once the stream is
/// playing or opening failed.
fn spawn_stream(
    direction: Direction,
    name: Option<&str>,
    shared: Arc<Shared>,
) -> Result<(StreamThread, StreamShape), AudioError> {
    let name = name.map(str::to_owned);
    let (ready_tx, ready_rx) = mpsc::sync_channel(1);
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name(format!("audio-{direction}"))
        .spawn(move || {
            let alsa_log = alsa_quiet::capture();
            match open_stream(direction, name.as_deref(), shared) {
                Ok((stream, shape)) => {
                    alsa_quiet::log(&alsa_log);
                    let _ = ready_tx.send(Ok(shape));
                    // Returns when the endpoint drops the sender.
                    let _ = stop_rx.recv();
                    drop(stream);
                }
                Err(error) => {
                    alsa_quiet::log(&alsa_log);
                    let _ = ready_tx.send(Err(error));
                }
            }
        })
        .map_err(|source| AudioError::DeviceThread { direction, source })?;
    let mut handle = StreamThread {
        stop: Some(stop_tx),
        thread: Some(thread),
    };
    match ready_rx.recv() {
        Ok(Ok(shape)) => Ok((handle, shape)),
        Ok(Err(error)) => {
            handle.stop();
            Err(error)
        }
        Err(_) => {
            handle.stop();
            Err(AudioError::DeviceThread {
                direction,
                source: std::io::Error::other("audio thread ended while opening the device"),
            })
        }
    }
}

/// Runs `f` on a short-lived thread whose ALSA messages are captured rather than printed.
fn on_quiet_thread<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> std::io::Result<R> {
    let thread = std::thread::Builder::new()
        .name("audio-probe".into())
        .spawn(move || {
            let alsa_log = alsa_quiet::capture();
            let result = f();
            alsa_quiet::log(&alsa_log);
            result
        })?;
    thread
        .join()
        .map_err(|_| std::io::Error::other("audio probe thread panicked"))
}

fn device_id(device: &cpal::Device) -> String {
    device.id().map(|id| id.to_string()).unwrap_or_default()
}

fn device_name(device: &cpal::Device) -> String {
    device
        .description()
        .map(|d| d.name().to_owned())
        .unwrap_or_default()
}

/// True when `name` is the device's full id (`alsa:default`), its host-local id (`default`)
/// or its description's name.
fn device_matches(device: &cpal::Device, name: &str) -> bool {
    let id_matches = device
        .id()
        .is_ok_and(|id| id.to_string() == name || id.id() == name);
    id_matches || device_name(device) == name
}

fn find_device(direction: Direction, name: Option<&str>) -> Result<cpal::Device, AudioError> {
    let host = cpal::default_host();
    let Some(name) = name else {
        let device = match direction {
            Direction::Playback => host.default_output_device(),
            Direction::Capture => host.default_input_device(),
        };
        return device.ok_or(AudioError::NoDefaultDevice { direction });
    };
    let wrong_way = match direction {
        Direction::Playback => DeviceDirection::Input,
        Direction::Capture => DeviceDirection::Output,
    };
    host.devices()
        .map_err(|source| AudioError::Enumerate { source })?
        .filter(|d| d.description().map(|desc| desc.direction()).ok() != Some(wrong_way))
        .find(|d| device_matches(d, name))
        .ok_or_else(|| AudioError::DeviceNotFound {
            direction,
            name: name.to_owned(),
        })
}

fn open_stream(
    direction: Direction,
    name: Option<&str>,
    shared: Arc<Shared>,
) -> Result<(cpal::Stream, StreamShape), AudioError> {
    let device = find_device(direction, name)?;
    let label = {
        let id = device_id(&device);
        if id.is_empty() {
            device_name(&device)
        } else {
            id
        }
    };
    let open_error = |source| AudioError::DeviceOpen {
        direction,
        device: label.clone(),
        source,
    };
    let supported = choose_config(&device, direction)
        .map_err(open_error)?
        .ok_or_else(|| AudioError::NoUsableConfig {
            direction,
            device: label.clone(),
        })?;
    let shape = StreamShape {
        device: label.clone(),
        rate: supported.sample_rate(),
        channels: supported.channels(),
    };
    let mut config = supported.config();
    config.buffer_size = preferred_buffer(&supported);
    let format = supported.sample_format();
    let stream = match build_stream(&device, direction, format, &config, &shared) {
        Ok(stream) => stream,
        Err(first) if config.buffer_size != BufferSize::Default => {
            tracing::debug!(device = %label, error = %first,
                "fixed 20 ms buffer refused; using the device's default");
            config.buffer_size = BufferSize::Default;
            build_stream(&device, direction, format, &config, &shared).map_err(open_error)?
        }
        Err(error) => return Err(open_error(error)),
    };
    stream.play().map_err(open_error)?;
    Ok((stream, shape))
}

/// 20 ms periods when the device allows them.
fn preferred_buffer(supported: &SupportedStreamConfig) -> BufferSize {
    let period = supported.sample_rate() / 50;
    match *supported.buffer_size() {
        SupportedBufferSize::Range { min, max } if !(min..=max).contains(&period) => {
            BufferSize::Default
        }
        _ => BufferSize::Fixed(period),
    }
}

/// 48 kHz with the fewest channels and the friendliest sample format, else the device's
/// default configuration; `None` if neither is usable.
fn choose_config(
    device: &cpal::Device,
    direction: Direction,
) -> Result<Option<SupportedStreamConfig>, cpal::Error> {
    let ranges: Vec<SupportedStreamConfigRange> = match direction {
        Direction::Playback => device.supported_output_configs()?.collect(),
        Direction::Capture => device.supported_input_configs()?.collect(),
    };
    let best = ranges
        .into_iter()
        .filter(|r| format_rank(r.sample_format()).is_some() && r.contains_rate(PREFERRED_RATE))
        .min_by_key(|r| (r.channels(), format_rank(r.sample_format())));
    if let Some(range) = best {
        return Ok(Some(range.with_sample_rate(PREFERRED_RATE)));
    }
    let default = match direction {
        Direction::Playback => device.default_output_config()?,
        Direction::Capture => device.default_input_config()?,
    };
    Ok(format_rank(default.sample_format()).map(|_| default))
}

/// Preference among the sample formats we convert; `None` for the others.
fn format_rank(format: SampleFormat) -> Option<u8> {
    Some(match format {
        SampleFormat::I16 => 0,
        SampleFormat::F32 => 1,
        SampleFormat::I32 => 2,
        SampleFormat::F64 => 3,
        SampleFormat::U16 => 4,
        SampleFormat::U8 => 5,
        SampleFormat::I8 => 6,
        _ => return None,
    })
}

fn build_stream(
    device: &cpal::Device,
    direction: Direction,
    format: SampleFormat,
    config: &cpal::StreamConfig,
    shared: &Arc<Shared>,
) -> Result<cpal::Stream, cpal::Error> {
    macro_rules! typed {
        ($t:ty) => {
            match direction {
                Direction::Playback => build_playback::<$t>(device, config, shared),
                Direction::Capture => build_capture::<$t>(device, config, shared),
            }
        };
    }
    match format {
        SampleFormat::I16 => typed!(i16),
        SampleFormat::F32 => typed!(f32),
        SampleFormat::I32 => typed!(i32),
        SampleFormat::F64 => typed!(f64),
        SampleFormat::U16 => typed!(u16),
        SampleFormat::U8 => typed!(u8),
        SampleFormat::I8 => typed!(i8),
        _ => Err(cpal::Error::new(ErrorKind::UnsupportedConfig)),
    }
}

fn error_callback(shared: Arc<Shared>, direction: Direction) -> impl FnMut(cpal::Error) + Send {
    move |error: cpal::Error| match error.kind() {
        ErrorKind::Xrun | ErrorKind::DeviceChanged | ErrorKind::RealtimeDenied => {
            tracing::debug!(%direction, %error, "audio stream hiccup");
        }
        _ => {
            let mut failure = shared.failure.lock().unwrap_or_else(|e| e.into_inner());
            failure.get_or_insert(error);
        }
    }
}

fn build_playback<T>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    shared: &Arc<Shared>,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + FromSample<i16>,
{
    let channels = usize::from(config.channels.max(1));
    let prefill = samples_in(PREFILL, config.sample_rate);
    let ring_shared = shared.clone();
    device.build_output_stream::<T, _, _>(
        *config,
        move |data: &mut [T], _| fill_playback(&ring_shared, channels, prefill, data),
        error_callback(shared.clone(), Direction::Playback),
        Some(OPEN_TIMEOUT),
    )
}

/// The playback callback: one queued sample per frame, copied to every channel.
fn fill_playback<T: SizedSample + FromSample<i16>>(
    shared: &Shared,
    channels: usize,
    prefill: usize,
    data: &mut [T],
) {
    let mut ring = shared.ring();
    if !ring.playing && ring.samples.len() >= prefill {
        ring.playing = true;
    }
    for frame in data.chunks_mut(channels) {
        let sample = if ring.playing {
            match ring.samples.pop_front() {
                Some(s) => s,
                None => {
                    ring.playing = false;
                    ring.underruns += 1;
                    0
                }
            }
        } else {
            0
        };
        frame.fill(T::from_sample(sample));
    }
}

fn build_capture<T>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    shared: &Arc<Shared>,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample,
    i16: FromSample<T>,
{
    let channels = usize::from(config.channels.max(1));
    let max = samples_in(MAX_BUFFERED, config.sample_rate);
    let ring_shared = shared.clone();
    device.build_input_stream::<T, _, _>(
        *config,
        move |data: &[T], _| take_capture(&ring_shared, channels, max, data),
        error_callback(shared.clone(), Direction::Capture),
        Some(OPEN_TIMEOUT),
    )
}

/// The capture callback: mixes each frame to mono and queues it, keeping the newest `max`.
fn take_capture<T: SizedSample>(shared: &Shared, channels: usize, max: usize, data: &[T])
where
    i16: FromSample<T>,
{
    let mut ring = shared.ring();
    let mono = data.chunks(channels).map(|frame| {
        let sum: i32 = frame.iter().map(|&s| i32::from(i16::from_sample(s))).sum();
        (sum / frame.len() as i32) as i16
    });
    ring.push_bounded(mono, max);
}

/// Keeps alsa-lib's diagnostics off stderr: they are captured per thread and logged at debug
/// level, so a machine without a sound card gets one clear warning instead of a page of noise.
#[cfg(target_os = "linux")]
mod alsa_quiet {
    use std::cell::RefCell;
    use std::rc::Rc;

    pub(super) type Log = Option<Rc<RefCell<alsa::Output>>>;

    /// Installs the capturing handler for the current thread.
    pub(super) fn capture() -> Log {
        alsa::Output::local_error_handler().ok()
    }

    /// Logs what was captured so far.
    pub(super) fn log(log: &Log) {
        if let Some(out) = log {
            let text = out.borrow().to_string();
            let text = text.trim();
            if !text.is_empty() {
                tracing::debug!(alsa = %text, "alsa-lib diagnostics");
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod alsa_quiet {
    pub(super) type Log = ();
    pub(super) fn capture() -> Log {}
    pub(super) fn log(_: &Log) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared_with(samples: &[i16], playing: bool) -> Arc<Shared> {
        let shared = Shared::new();
        {
            let mut ring = shared.ring();
            ring.samples.extend(samples.iter().copied());
            ring.playing = playing;
        }
        shared
    }

    #[test]
    fn playback_waits_for_prefill_before_draining() {
        let shared = shared_with(&[5, 6], false);
        let mut out = [1i16; 4];
        fill_playback(&shared, 1, 3, &mut out);
        assert_eq!(out, [0; 4]);
        assert_eq!(shared.ring().samples.len(), 2);
    }

    #[test]
    fn playback_underrun_yields_zeros_and_counts() {
        let shared = shared_with(&[5, 6, 7], false);
        let mut out = [1i16; 8];
        fill_playback(&shared, 2, 3, &mut out);
        assert_eq!(out, [5, 5, 6, 6, 7, 7, 0, 0]);
        let ring = shared.ring();
        assert_eq!(ring.underruns, 1);
        assert!(!ring.playing);
    }

    #[test]
    fn playback_converts_to_float_devices() {
        let shared = shared_with(&[16384], true);
        let mut out = [0f32; 1];
        fill_playback(&shared, 1, 0, &mut out);
        assert!((out[0] - 0.5).abs() < 1e-4);
    }

    #[test]
    fn capture_mixes_channels_and_keeps_newest() {
        let shared = Shared::new();
        take_capture(&shared, 2, 2, &[100i16, 300, -10, -30, 7, 9]);
        let ring = shared.ring();
        assert_eq!(ring.samples, [-20, 8]);
        assert_eq!(ring.dropped, 1);
    }

    #[test]
    fn queue_keeps_only_the_newest_max_samples() {
        let shared = Shared::new();
        let mut ring = shared.ring();
        ring.push_bounded([1, 2, 3], 4);
        ring.push_bounded([4, 5, 6], 4);
        assert_eq!(ring.samples, [3, 4, 5, 6]);
        assert_eq!(ring.dropped, 2);
    }
}
