//! The interactive phone's parts that do not run it: the command
//! language ([`command`]), dial-string completion ([`target`]), the calls
//! table and prompt ([`state`]), the call history file ([`history`]), what
//! `wait-for` sees ([`waits`]) and the rustyline terminal ([`term`]). `cli::phone` runs them.

pub mod command;
pub mod history;
pub mod state;
pub mod target;
pub mod term;
pub mod waits;
