//! The sending side of one RTP stream: SSRC, sequence numbers and timestamps.

use ::rtp::header::Header;
use bytes::{BufMut, Bytes, BytesMut};
use rand::Rng;
use webrtc_util::marshal::{Marshal, MarshalSize};

/// Stamps outgoing payloads with the RTP header of one synchronization source.
///
/// RFC 3550 §5.1: the SSRC, the initial sequence number and the initial
/// timestamp are random, so that known-plaintext attacks on encryption and
/// collisions between sources are unlikely.
#[derive(Debug, Clone)]
pub struct RtpSender {
    header: Header,
}

impl RtpSender {
    /// A sender with a random SSRC, sequence number and timestamp.
    pub fn new(payload_type: u8, rng: &mut (impl Rng + ?Sized)) -> Self {
        RtpSender {
            header: Header {
                version: 2,
                payload_type,
                ssrc: rng.random(),
                sequence_number: rng.random(),
                timestamp: rng.random(),
                ..Header::default()
            },
        }
    }

    /// Our SSRC.
    pub fn ssrc(&self) -> u32 {
        self.header.ssrc
    }

    /// Sequence number the next packet will carry.
    pub fn next_sequence_number(&self) -> u16 {
        self.header.sequence_number
    }

    /// Timestamp the next packet will carry.
    pub fn next_timestamp(&self) -> u32 {
        self.header.timestamp
    }

    /// Changes the payload type of later packets (codec change on re-INVITE).
    pub fn set_payload_type(&mut self, payload_type: u8) {
        self.header.payload_type = payload_type;
    }

    /// Moves the timestamp on by `samples` without sending, e.g. for frames
    /// not sent while on hold, so that the timestamp keeps following the
    /// sampling clock (RFC 3550 §5.1).
    pub fn skip(&mut self, samples: u32) {
        self.header.timestamp = self.header.timestamp.wrapping_add(samples);
    }

    /// A packet of another payload type at an explicit timestamp (RFC 4733
    /// §2.5.1: every packet of one telephone-event carries the event's start
    /// timestamp); the sequence number moves on, the running timestamp not.
    pub fn packetize_at(
        &mut self,
        payload_type: u8,
        timestamp: u32,
        payload: &[u8],
        marker: bool,
    ) -> Bytes {
        let (pt, ts) = (self.header.payload_type, self.header.timestamp);
        self.header.payload_type = payload_type;
        self.header.timestamp = timestamp;
        let packet = self.packetize(payload, 0, marker);
        self.header.payload_type = pt;
        self.header.timestamp = ts;
        packet
    }

    /// Builds the next RTP packet around `payload`, which holds `samples`
    /// sampling periods. `marker` flags the first packet of a talk spurt
    /// (RFC 3551 §4.1). Sequence number and timestamp then move on, wrapping.
    pub fn packetize(&mut self, payload: &[u8], samples: u32, marker: bool) -> Bytes {
        self.header.marker = marker;
        let header_len = self.header.marshal_size();
        let mut buf = BytesMut::zeroed(header_len);
        buf.reserve(payload.len());
        let written = self
            .header
            .marshal_to(&mut buf)
            .expect("buffer was sized by marshal_size");
        debug_assert_eq!(written, header_len);
        buf.put_slice(payload);
        self.header.sequence_number = self.header.sequence_number.wrapping_add(1);
        self.header.timestamp = self.header.timestamp.wrapping_add(samples);
        buf.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::super::RtpPacket;
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn initial_ssrc_sequence_and_timestamp_are_random_rfc3550_5_1() {
        let a = RtpSender::new(0, &mut StdRng::seed_from_u64(1));
        let b = RtpSender::new(0, &mut StdRng::seed_from_u64(2));
        assert_ne!(a.ssrc(), b.ssrc());
        assert_ne!(a.next_sequence_number(), b.next_sequence_number());
        assert_ne!(a.next_timestamp(), b.next_timestamp());
    }

    #[test]
    fn packetize_advances_sequence_by_one_and_timestamp_by_samples() {
        let mut s = RtpSender::new(8, &mut StdRng::seed_from_u64(3));
        let (seq, ts) = (s.next_sequence_number(), s.next_timestamp());
        let first = RtpPacket::parse(&s.packetize(&[1, 2, 3], 160, true)).expect("valid");
        let second = RtpPacket::parse(&s.packetize(&[4], 160, false)).expect("valid");
        assert_eq!(first.sequence_number, seq);
        assert_eq!(first.timestamp, ts);
        assert!(first.marker);
        assert_eq!(first.payload_type, 8);
        assert_eq!(first.ssrc, s.ssrc());
        assert_eq!(&first.payload[..], &[1, 2, 3]);
        assert_eq!(second.sequence_number, seq.wrapping_add(1));
        assert_eq!(second.timestamp, ts.wrapping_add(160));
        assert!(!second.marker);
    }

    #[test]
    fn sequence_and_timestamp_wrap_around() {
        let mut s = RtpSender::new(0, &mut StdRng::seed_from_u64(4));
        s.header.sequence_number = u16::MAX;
        s.header.timestamp = u32::MAX - 100;
        s.packetize(&[0; 160], 160, false);
        assert_eq!(s.next_sequence_number(), 0);
        assert_eq!(s.next_timestamp(), 59);
    }

    #[test]
    fn packet_is_header_plus_payload_and_parses_with_rtp_crate() {
        use webrtc_util::marshal::Unmarshal;
        let mut s = RtpSender::new(0, &mut StdRng::seed_from_u64(5));
        let bytes = s.packetize(&[0xFF; 160], 160, false);
        assert_eq!(bytes.len(), 172);
        let parsed = ::rtp::packet::Packet::unmarshal(&mut bytes.clone()).expect("valid");
        assert_eq!(parsed.header.ssrc, s.ssrc());
        assert_eq!(parsed.payload.len(), 160);
    }
}
