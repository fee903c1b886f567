//! Silence and the bit bucket: the endpoints used when a call has no audio device.

use super::{AudioError, AudioSink, AudioSource};

/// A source that yields silence forever.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullSource;

impl AudioSource for NullSource {
    fn read_frame(&mut self, out: &mut [i16]) {
        out.fill(0);
    }
}

/// A sink that discards everything it is given.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullSink;

impl AudioSink for NullSink {
    fn write_frame(&mut self, _pcm: &[i16]) -> Result<(), AudioError> {
        Ok(())
    }

    fn finish(&mut self) -> Result<(), AudioError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_source_overwrites_the_frame_with_silence_and_never_finishes() {
        let mut src = NullSource;
        let mut frame = [7i16; 160];
        src.read_frame(&mut frame);
        assert!(frame.iter().all(|&s| s == 0));
        assert!(!src.is_finished());
    }

    #[test]
    fn null_sink_accepts_frames_after_finish() {
        let mut sink = NullSink;
        sink.write_frame(&[1, 2, 3]).unwrap();
        sink.finish().unwrap();
        sink.write_frame(&[1]).unwrap();
    }
}
