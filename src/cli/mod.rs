//! Command line: clap arguments and JSON events.
