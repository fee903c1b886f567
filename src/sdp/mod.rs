//! SDP offer/answer (RFC 3264) over webrtc-sdp.
