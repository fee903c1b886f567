//! WAV files as call audio: [`WavSource`] plays a file into a call, [`WavSink`] records one.
//!
//! The source accepts whatever `hound` reads (8/16/24/32-bit integer, 32-bit float, any
//! channel count and rate), mixes it down to mono and resamples it to the call's rate; after
//! the last sample it yields silence and reports [`AudioSource::is_finished`]. The sink writes
//! mono 16-bit PCM at the call's rate and rewrites the header after every second of audio, so
//! the file stays readable even if the process is killed before [`AudioSink::finish`].

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use hound::{SampleFormat, WavReader, WavSpec, WavWriter};

use super::resample::MonoResampler;
use super::{AudioError, AudioFormat, AudioSink, AudioSource};

/// Plays a WAV file, frame by frame, at the call's rate.
pub struct WavSource {
    path: PathBuf,
    /// `None` once the file is exhausted (or failed mid-way).
    reader: Option<WavReader<BufReader<File>>>,
    channels: usize,
    kind: SampleFormat,
    /// Factor bringing integer samples to `[-1.0, 1.0)`.
    int_scale: f32,
    /// File frames read per refill (20 ms at the file's rate).
    chunk_frames: usize,
    resampler: MonoResampler,
}

impl WavSource {
    /// Opens `path` and prepares to deliver it as mono frames at `format.rate`.
    pub fn open(path: impl AsRef<Path>, format: AudioFormat) -> Result<Self, AudioError> {
        format.validate()?;
        let path = path.as_ref().to_path_buf();
        let reader = WavReader::open(&path).map_err(|source| AudioError::WavOpen {
            path: path.clone(),
            source,
        })?;
        let spec = reader.spec();
        check_readable(&path, spec)?;
        let chunk_frames = (spec.sample_rate as usize / 50).max(1);
        let resampler =
            MonoResampler::new(spec.sample_rate, format.rate, chunk_frames).map_err(|source| {
                AudioError::Resampler {
                    from: spec.sample_rate,
                    to: format.rate,
                    source,
                }
            })?;
        Ok(Self {
            path,
            reader: Some(reader),
            channels: usize::from(spec.channels),
            kind: spec.sample_format,
            int_scale: 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32,
            chunk_frames,
            resampler,
        })
    }

    /// Reads file chunks until `want` converted samples are ready or the file ends.
    fn refill(&mut self, want: usize) {
        while self.resampler.available() < want && self.reader.is_some() {
            self.read_chunk();
        }
    }

    /// Reads one chunk, mixes it to mono and feeds the resampler; at the end of the file (or
    /// on a read error) drops the reader and flushes the resampler.
    fn read_chunk(&mut self) {
        let Some(reader) = self.reader.as_mut() else {
            return;
        };
        let wanted = self.chunk_frames * self.channels;
        let (mono, outcome) = match self.kind {
            SampleFormat::Int => {
                let scale = self.int_scale;
                read_mono(reader, wanted, self.channels, |s: i32| s as f32 * scale)
            }
            SampleFormat::Float => read_mono(reader, wanted, self.channels, |s: f32| s),
        };
        self.resampler.push(&mono);
        match outcome {
            ChunkOutcome::Full => {}
            ChunkOutcome::End => self.end_of_file(),
            ChunkOutcome::Failed(error) => {
                tracing::warn!(
                    path = %self.path.display(),
                    %error,
                    "WAV file is truncated or corrupt; playing what was read"
                );
                self.end_of_file();
            }
        }
    }

    fn end_of_file(&mut self) {
        self.reader = None;
        self.resampler.finish();
    }
}

impl AudioSource for WavSource {
    fn read_frame(&mut self, out: &mut [i16]) {
        self.refill(out.len());
        let n = self.resampler.pop_into(out);
        out[n..].fill(0);
    }

    fn is_finished(&self) -> bool {
        self.reader.is_none() && self.resampler.available() == 0
    }
}

/// Rejects sample layouts `hound` cannot deliver as `i32` or `f32`.
fn check_readable(path: &Path, spec: WavSpec) -> Result<(), AudioError> {
    let ok = spec.channels > 0
        && spec.sample_rate > 0
        && match spec.sample_format {
            SampleFormat::Int => (8..=32).contains(&spec.bits_per_sample),
            SampleFormat::Float => spec.bits_per_sample == 32,
        };
    if ok {
        Ok(())
    } else {
        Err(AudioError::WavUnsupported {
            path: path.to_path_buf(),
            channels: spec.channels,
            bits: spec.bits_per_sample,
            kind: spec.sample_format,
            rate: spec.sample_rate,
        })
    }
}

enum ChunkOutcome {
    Full,
    End,
    Failed(hound::Error),
}

/// Reads up to `wanted` interleaved samples and averages each frame's channels.
fn read_mono<S: hound::Sample>(
    reader: &mut WavReader<BufReader<File>>,
    wanted: usize,
    channels: usize,
    to_f32: impl Fn(S) -> f32,
) -> (Vec<f32>, ChunkOutcome) {
    let mut mono = Vec::with_capacity(wanted / channels);
    let mut acc = 0.0f32;
    let mut in_frame = 0;
    let mut read = 0;
    for sample in reader.samples::<S>().take(wanted) {
        match sample {
            Ok(s) => {
                read += 1;
                acc += to_f32(s);
                in_frame += 1;
                if in_frame == channels {
                    mono.push(acc / channels as f32);
                    acc = 0.0;
                    in_frame = 0;
                }
            }
            Err(error) => return (mono, ChunkOutcome::Failed(error)),
        }
    }
    let outcome = if read < wanted {
        ChunkOutcome::End
    } else {
        ChunkOutcome::Full
    };
    (mono, outcome)
}

/// Records call audio as a mono 16-bit WAV file at the call's rate.
pub struct WavSink {
    path: PathBuf,
    /// `None` after [`AudioSink::finish`].
    writer: Option<WavWriter<BufWriter<File>>>,
    /// Samples written since the header was last rewritten.
    since_flush: usize,
    /// Rewrite the header after this many samples (one second).
    flush_every: usize,
}

impl WavSink {
    /// Creates (or truncates) `path`.
    pub fn create(path: impl AsRef<Path>, format: AudioFormat) -> Result<Self, AudioError> {
        format.validate()?;
        let path = path.as_ref().to_path_buf();
        let spec = WavSpec {
            channels: 1,
            sample_rate: format.rate,
            bits_per_sample: 16,
            sample_format: SampleFormat::Int,
        };
        let mut writer =
            WavWriter::create(&path, spec).map_err(|source| AudioError::WavCreate {
                path: path.clone(),
                source,
            })?;
        // A valid (empty) file from the start, in case we are killed before the first second.
        writer.flush().map_err(|source| AudioError::WavCreate {
            path: path.clone(),
            source,
        })?;
        Ok(Self {
            path,
            writer: Some(writer),
            since_flush: 0,
            flush_every: format.rate as usize,
        })
    }

    /// Rewrites the header and flushes buffered samples, leaving a valid file on disk.
    pub fn flush(&mut self) -> Result<(), AudioError> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        self.since_flush = 0;
        writer.flush().map_err(|source| AudioError::WavWrite {
            path: self.path.clone(),
            source,
        })
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl AudioSink for WavSink {
    fn write_frame(&mut self, pcm: &[i16]) -> Result<(), AudioError> {
        let writer = self.writer.as_mut().ok_or(AudioError::SinkFinished)?;
        for &s in pcm {
            writer
                .write_sample(s)
                .map_err(|source| AudioError::WavWrite {
                    path: self.path.clone(),
                    source,
                })?;
        }
        self.since_flush += pcm.len();
        if self.since_flush >= self.flush_every {
            self.flush()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), AudioError> {
        let Some(writer) = self.writer.take() else {
            return Ok(());
        };
        writer.finalize().map_err(|source| AudioError::WavWrite {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NB: AudioFormat = AudioFormat::NARROWBAND;

    #[test]
    fn missing_file_is_a_typed_error_naming_the_path() {
        let err = WavSource::open("/nonexistent/dir/x.wav", NB).err().unwrap();
        assert!(matches!(&err, AudioError::WavOpen { path, .. } if path.ends_with("x.wav")));
        assert!(err.to_string().contains("/nonexistent/dir/x.wav"));
    }

    #[test]
    fn file_without_riff_header_is_rejected_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk.wav");
        std::fs::write(&path, b"this is not a wave file at all, just text").unwrap();
        let err = WavSource::open(&path, NB).err().unwrap();
        assert!(matches!(err, AudioError::WavOpen { .. }), "{err:?}");
    }

    #[test]
    fn zero_rate_format_is_rejected() {
        let bad = AudioFormat {
            rate: 0,
            frame_samples: 160,
        };
        let dir = tempfile::tempdir().unwrap();
        let err = WavSink::create(dir.path().join("a.wav"), bad)
            .err()
            .unwrap();
        assert!(matches!(err, AudioError::InvalidFormat { .. }));
    }

    #[test]
    fn sink_rejects_frames_after_finish_and_finish_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = WavSink::create(dir.path().join("a.wav"), NB).unwrap();
        sink.write_frame(&[1; 160]).unwrap();
        sink.finish().unwrap();
        sink.finish().unwrap();
        assert!(matches!(
            sink.write_frame(&[1; 160]),
            Err(AudioError::SinkFinished)
        ));
    }

    #[test]
    fn freshly_created_sink_is_already_a_valid_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let _sink = WavSink::create(&path, NB).unwrap();
        let reader = WavReader::open(&path).unwrap();
        assert_eq!(reader.len(), 0);
        assert_eq!(reader.spec().sample_rate, 8000);
    }
}
