//! The user agent: the sans-IO call core ([`agent`], [`call`]) and the
//! tokio shell that runs it ([`driver`]).

pub mod accounts;
pub mod agent;
pub mod call;
pub mod digest;
pub mod driver;
pub mod hold;
pub mod refer;
pub mod registration;

pub use agent::{EndReason, UaConfig, UaError, UaEvent, UaOutput, UserAgent};
pub use call::{CallDirection, CallHandle, CallState};
pub use driver::{MediaIo, Phone, PhoneConfig, PhoneEvent, RtpTap, TappedDatagram};
pub use hold::{HoldIntent, HoldState};
pub use refer::TransferProgress;

#[cfg(test)]
mod tests;
