//! Telling RTP, RTCP and STUN apart on one UDP socket, by the first two
//! bytes of the datagram.

/// What a datagram received on the media socket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An RTP data packet.
    Rtp,
    /// An RTCP packet (multiplexed on the RTP port, RFC 5761).
    Rtcp,
    /// A STUN message (binding request/response, keep-alive).
    Stun,
    /// Anything else (DTLS, TURN channel data, garbage).
    Other,
}

/// Smallest RTP packet: the fixed header (RFC 3550 §5.1).
const RTP_MIN_LEN: usize = 12;
/// Smallest RTCP packet: header plus SSRC (RFC 3550 §6.4).
const RTCP_MIN_LEN: usize = 8;
/// Smallest STUN message: its header (RFC 8489 §5).
const STUN_MIN_LEN: usize = 20;

/// Classifies a datagram received on the media socket.
///
/// RFC 7983 §7: a first byte in 0..=3 is STUN, 128..=191 is RTP or RTCP.
/// RFC 5761 §4: within that range, a second byte in 192..=223 (RTCP packet
/// types 192–223, i.e. marker bit plus payload types 64–95, which RTP must
/// not use) is RTCP.
pub fn classify(datagram: &[u8]) -> Kind {
    let (Some(&first), Some(&second)) = (datagram.first(), datagram.get(1)) else {
        return Kind::Other;
    };
    match first {
        0..=3 if datagram.len() >= STUN_MIN_LEN => Kind::Stun,
        128..=191 if (192..=223).contains(&second) => {
            if datagram.len() >= RTCP_MIN_LEN {
                Kind::Rtcp
            } else {
                Kind::Other
            }
        }
        128..=191 if datagram.len() >= RTP_MIN_LEN => Kind::Rtp,
        _ => Kind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datagram(first: u8, second: u8, len: usize) -> Vec<u8> {
        let mut d = vec![0; len];
        d[0] = first;
        d[1] = second;
        d
    }

    #[test]
    fn rfc7983_first_byte_0_to_3_is_stun() {
        assert_eq!(classify(&datagram(0, 1, 20)), Kind::Stun);
        assert_eq!(classify(&datagram(1, 1, 32)), Kind::Stun);
        assert_eq!(classify(&datagram(3, 0, 20)), Kind::Stun);
        assert_eq!(classify(&datagram(0, 1, 19)), Kind::Other);
    }

    #[test]
    fn rfc5761_second_byte_192_to_223_is_rtcp() {
        assert_eq!(classify(&datagram(0x80, 200, 28)), Kind::Rtcp); // SR
        assert_eq!(classify(&datagram(0x81, 201, 32)), Kind::Rtcp); // RR
        assert_eq!(classify(&datagram(0x80, 192, 8)), Kind::Rtcp);
        assert_eq!(classify(&datagram(0x80, 223, 8)), Kind::Rtcp);
    }

    #[test]
    fn rtp_range_outside_rtcp_types_is_rtp() {
        assert_eq!(classify(&datagram(0x80, 0, 172)), Kind::Rtp); // PCMU
        assert_eq!(classify(&datagram(0x80, 0x88, 172)), Kind::Rtp); // PCMA + marker
        assert_eq!(classify(&datagram(0x80, 101, 16)), Kind::Rtp); // telephone-event
        assert_eq!(classify(&datagram(0x80, 224, 12)), Kind::Rtp);
        assert_eq!(classify(&datagram(0xBF, 191, 12)), Kind::Rtp);
    }

    #[test]
    fn short_or_foreign_datagrams_are_other() {
        assert_eq!(classify(&[]), Kind::Other);
        assert_eq!(classify(&[0x80]), Kind::Other);
        assert_eq!(classify(&datagram(0x80, 0, 11)), Kind::Other);
        assert_eq!(classify(&datagram(22, 0xFE, 40)), Kind::Other); // DTLS
        assert_eq!(classify(&datagram(64, 0, 40)), Kind::Other); // TURN channel
        assert_eq!(classify(&datagram(0xC0, 0, 40)), Kind::Other);
    }
}
