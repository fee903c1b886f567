//! Received RTP packets: a small parser that validates the fixed header
//! (RFC 3550 §5.1), skips CSRCs and header extensions (§5.3.1) and strips
//! padding, returning typed errors for every malformed input.
//!
//! `rtp::packet::Packet::unmarshal` (rtp 0.17) neither checks the version nor
//! bounds one-byte header extension elements (it panics on an element that
//! runs past the datagram), so packets from the network go through this
//! parser instead; the `rtp` crate is used for what we send.

use bytes::Bytes;

/// Length of the fixed RTP header (RFC 3550 §5.1).
pub(crate) const FIXED_HEADER_LEN: usize = 12;

/// The fields of a received RTP packet that the media path uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket {
    /// M bit: for audio, the first packet of a talk spurt (RFC 3551 §4.1).
    pub marker: bool,
    /// PT field.
    pub payload_type: u8,
    /// Sequence number, +1 per packet, wraps at 2^16.
    pub sequence_number: u16,
    /// Sampling instant of the first octet, in clock-rate units; wraps at 2^32.
    pub timestamp: u32,
    /// Synchronization source.
    pub ssrc: u32,
    /// Payload without padding.
    pub payload: Bytes,
}

/// Why a datagram is not a well-formed RTP packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    /// Shorter than the 12-byte fixed header.
    #[error("RTP packet of {len} bytes is shorter than the fixed header")]
    TooShort {
        /// Datagram length.
        len: usize,
    },
    /// Version field other than 2 (RFC 3550 §5.1).
    #[error("RTP version {version}, expected 2")]
    BadVersion {
        /// The V field.
        version: u8,
    },
    /// The CSRC list runs past the end of the datagram.
    #[error("{csrc_count} CSRCs do not fit in a {len}-byte packet")]
    CsrcOverrun {
        /// The CC field.
        csrc_count: u8,
        /// Datagram length.
        len: usize,
    },
    /// The header extension runs past the end of the datagram (RFC 3550 §5.3.1).
    #[error("header extension ending at byte {end} exceeds the {len}-byte packet")]
    ExtensionOverrun {
        /// Offset just after the extension.
        end: usize,
        /// Datagram length.
        len: usize,
    },
    /// The padding count is zero or larger than the payload (RFC 3550 §5.1, P bit).
    #[error("padding of {padding} bytes with {available} bytes after the header")]
    BadPadding {
        /// Last octet of the packet.
        padding: u8,
        /// Bytes after the header (payload plus padding).
        available: usize,
    },
}

impl RtpPacket {
    /// Parses one RTP datagram, copying only its payload.
    pub fn parse(datagram: &[u8]) -> Result<RtpPacket, RtpError> {
        let len = datagram.len();
        let [b0, b1, s0, s1, t0, t1, t2, t3, c0, c1, c2, c3] = *datagram
            .first_chunk::<FIXED_HEADER_LEN>()
            .ok_or(RtpError::TooShort { len })?;
        let version = b0 >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion { version });
        }
        let payload_start = header_end(datagram, b0)?;
        let payload_end = payload_end(datagram, b0, payload_start)?;
        Ok(RtpPacket {
            marker: b1 & 0x80 != 0,
            payload_type: b1 & 0x7F,
            sequence_number: u16::from_be_bytes([s0, s1]),
            timestamp: u32::from_be_bytes([t0, t1, t2, t3]),
            ssrc: u32::from_be_bytes([c0, c1, c2, c3]),
            payload: Bytes::copy_from_slice(&datagram[payload_start..payload_end]),
        })
    }
}

/// Offset of the payload: after the CSRC list and the header extension.
fn header_end(datagram: &[u8], b0: u8) -> Result<usize, RtpError> {
    let len = datagram.len();
    let csrc_count = b0 & 0x0F;
    let mut end = FIXED_HEADER_LEN + 4 * usize::from(csrc_count);
    if end > len {
        return Err(RtpError::CsrcOverrun { csrc_count, len });
    }
    if b0 & 0x10 != 0 {
        // RFC 3550 §5.3.1: 16-bit profile, 16-bit length in 32-bit words.
        let words = match datagram.get(end + 2..end + 4) {
            Some(&[hi, lo]) => usize::from(u16::from_be_bytes([hi, lo])),
            _ => return Err(RtpError::ExtensionOverrun { end: end + 4, len }),
        };
        end += 4 + 4 * words;
        if end > len {
            return Err(RtpError::ExtensionOverrun { end, len });
        }
    }
    Ok(end)
}

/// Offset just after the payload, once padding (P bit) is removed.
fn payload_end(datagram: &[u8], b0: u8, payload_start: usize) -> Result<usize, RtpError> {
    let len = datagram.len();
    if b0 & 0x20 == 0 {
        return Ok(len);
    }
    let available = len - payload_start;
    let padding = datagram.last().copied().unwrap_or(0);
    if padding == 0 || usize::from(padding) > available {
        return Err(RtpError::BadPadding { padding, available });
    }
    Ok(len - usize::from(padding))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(b0: u8) -> Vec<u8> {
        vec![
            b0, 0x80, 0x12, 0x34, 0xDE, 0xAD, 0xBE, 0xEF, 0x01, 0x02, 0x03, 0x04,
        ]
    }

    #[test]
    fn parses_fixed_header_fields_rfc3550_5_1() {
        let mut d = header(0x80);
        d.extend_from_slice(&[1, 2, 3]);
        let p = RtpPacket::parse(&d).expect("valid packet");
        assert!(p.marker);
        assert_eq!(p.payload_type, 0);
        assert_eq!(p.sequence_number, 0x1234);
        assert_eq!(p.timestamp, 0xDEADBEEF);
        assert_eq!(p.ssrc, 0x01020304);
        assert_eq!(&p.payload[..], &[1, 2, 3]);
    }

    #[test]
    fn skips_csrcs_and_header_extension() {
        let mut d = header(0x80 | 0x10 | 2);
        d.extend_from_slice(&[0xAA; 8]); // two CSRCs
        d.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x01, 0x10, 0xFF, 0x00, 0x00]);
        d.extend_from_slice(&[9, 9]);
        let p = RtpPacket::parse(&d).expect("valid packet");
        assert_eq!(&p.payload[..], &[9, 9]);
    }

    #[test]
    fn strips_padding() {
        let mut d = header(0xA0);
        d.extend_from_slice(&[5, 6, 0, 0, 3]);
        assert_eq!(&RtpPacket::parse(&d).expect("valid").payload[..], &[5, 6]);
    }

    #[test]
    fn malformed_packets_give_typed_errors_not_panics() {
        assert_eq!(
            RtpPacket::parse(&[0x80; 11]),
            Err(RtpError::TooShort { len: 11 })
        );
        assert_eq!(
            RtpPacket::parse(&header(0x40)),
            Err(RtpError::BadVersion { version: 1 })
        );
        assert_eq!(
            RtpPacket::parse(&header(0x83)),
            Err(RtpError::CsrcOverrun {
                csrc_count: 3,
                len: 12
            })
        );
        let mut ext = header(0x90);
        ext.extend_from_slice(&[0xBE, 0xDE]);
        assert_eq!(
            RtpPacket::parse(&ext),
            Err(RtpError::ExtensionOverrun { end: 16, len: 14 })
        );
        // One-byte extension element claiming 16 bytes, block of one word.
        let mut ext = header(0x90);
        ext.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x05, 0x1F]);
        assert_eq!(
            RtpPacket::parse(&ext),
            Err(RtpError::ExtensionOverrun { end: 36, len: 17 })
        );
        let mut pad = header(0xA0);
        pad.extend_from_slice(&[1, 9]);
        assert_eq!(
            RtpPacket::parse(&pad),
            Err(RtpError::BadPadding {
                padding: 9,
                available: 2
            })
        );
        let mut pad = header(0xA0);
        pad.push(0);
        assert!(matches!(
            RtpPacket::parse(&pad),
            Err(RtpError::BadPadding { padding: 0, .. })
        ));
    }

    #[test]
    fn every_prefix_of_a_packet_parses_or_errors_without_panic() {
        let mut d = header(0xB1);
        d.extend_from_slice(&[0; 4]);
        d.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x01, 0x10, 0xFF, 0x00, 0x00, 7, 1]);
        for n in 0..=d.len() {
            let _ = RtpPacket::parse(&d[..n]);
        }
        for b in 0..=255u8 {
            let mut x = d.clone();
            x[0] = b;
            let _ = RtpPacket::parse(&x);
        }
    }
}
