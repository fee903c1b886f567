//! SIP messages: parsing, printing, URIs and typed headers (RFC 3261 §7, §19, §20, §25).
