//! Transports: UDP sockets on tokio.
