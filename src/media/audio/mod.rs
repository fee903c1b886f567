//! Audio I/O: sound card (cpal), WAV files (hound) and silence.
