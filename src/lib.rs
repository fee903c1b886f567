//! sipline: a SIP softphone for the terminal.
//!
//! The crate is laid out by protocol layer (see `docs/architecture.md`). Lower
//! layers never import higher ones:
//!
//! ```text
//! cli ─► ua ─► dialog ─► transaction ─► transport ─► sip
//!         └──► sdp ─► media::codec
//!         └──► media (rtp, jitter, codec, audio)
//! ```
//!
//! Protocol cores (`transaction`, `dialog`, `ua::call`, `sdp`, `media::session`,
//! `media::jitter`) are sans-IO: they are fed bytes, commands and an explicit
//! `now: Instant`, and return what to transmit and when to wake up. Only
//! `transport::udp`, `media::audio` and `ua::driver` touch sockets, threads or
//! the clock.

pub mod cli;
pub mod dialog;
pub mod media;
pub mod nat;
pub mod sdp;
pub mod sip;
pub mod transaction;
pub mod transport;
pub mod ua;
