//! SIP transactions (RFC 3261 §17): sans-IO state machines driven by an explicit clock.
