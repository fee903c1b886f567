//! Typed views of header values, one header per file.

pub mod cseq;
pub mod name_addr;
pub mod via;

pub use cseq::{CSeq, CSeqError};
pub use name_addr::{NameAddr, NameAddrError};
pub use via::{BRANCH_COOKIE, Via, ViaError};
