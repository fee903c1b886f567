//! SIP dialogs (RFC 3261 §12): dialog identifiers, route sets and CSeq.
