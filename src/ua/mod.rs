//! The user agent: calls, and the tokio driver that runs them.
