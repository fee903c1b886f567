//! Conformance of the SIP message layer against the RFC 4475 torture tests,
//! the RFC 5118 IPv6 torture tests and reduced inputs from public bug
//! reports, with the verdicts of `tests/data/*/EXPECTED.md`.
//!
//! Every message is fed to `parse_datagram` as one UDP datagram. For
//! requests, "the verdict" is the status `check_request` returns (`None`
//! when it passes); responses go through `check_response`.
//!
//! Policies recorded here:
//! - RFC 4475 `baddn.dat` as archived has no blank line after its headers.
//!   Over UDP that is `ParseError::Incomplete` and the datagram is
//!   **dropped** without a response (we cannot know the head is complete).
//!   A stream framer would wait for more bytes. The terminated variant gets
//!   400.
//! - RFC 5118 §4.10, the 3-colon form `[2001:db8:::192.0.2.1]`, is
//!   **tolerated**: the extra colon is ignored and the address equals the
//!   2-colon form. RFC 4291 forbids the form; RFC 3261's ABNF admits it.
//! - RFC 4475 `badbranch` (branch exactly `z9hG4bK`) gets 400 rather than
//!   RFC 2543-style matching.
//! - `lwsstart` and `trws` (extra SPs in the request line) are accepted.
//! - `test.dat` (no SIP-Version, a header line without a colon) does not
//!   parse and, having no head, is dropped.
//! - A datagram whose body cannot be framed (clerr, ncl, mcl01, the RFC
//!   5118 originals with a too-large Content-Length) is a
//!   `ParseError::BadBody` whose head request is answered 400 through
//!   `build_error_response` and `Rejection::bad_framing`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sipline::sip::header::CSeq;
use sipline::sip::parse::BodyError;
use sipline::sip::validate::ResponseDefect;
use sipline::sip::{
    ALLOWED_METHODS, Host, Method, NameAddr, ParseError, Rejection, Request, Response, SipMessage,
    SipUri, Uri, Via, build_error_response, check_request, check_response, parse_datagram,
};

// ---------------------------------------------------------------- helpers

fn data(rel: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/{rel}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn t4475(name: &str) -> Vec<u8> {
    data(&format!("rfc4475/{name}.dat"))
}

fn t5118(name: &str) -> Vec<u8> {
    data(&format!("rfc5118/{name}.dat"))
}

fn as_request(bytes: &[u8]) -> Request {
    match parse_datagram(bytes) {
        Ok(SipMessage::Request(r)) => r,
        other => panic!("expected a request, got {other:?}"),
    }
}

fn as_response(bytes: &[u8]) -> Response {
    match parse_datagram(bytes) {
        Ok(SipMessage::Response(r)) => r,
        other => panic!("expected a response, got {other:?}"),
    }
}

fn req4475(name: &str) -> Request {
    as_request(&t4475(name))
}

fn verdict(req: &Request) -> Option<u16> {
    check_request(req).err().map(|r| r.status)
}

fn rejection(req: &Request) -> Rejection {
    check_request(req).expect_err("the request should be rejected")
}

fn ruri(req: &Request) -> Uri {
    Uri::parse(&req.uri).expect("Request-URI parses")
}

fn sip(uri: &Uri) -> &SipUri {
    uri.as_sip().expect("a SIP URI")
}

fn name(host: &str) -> Host {
    Host::Name(host.to_string())
}

fn v6(s: &str) -> Host {
    Host::Ipv6(s.parse().expect("test address"))
}

fn v4(s: &str) -> Host {
    Host::Ipv4(s.parse().expect("test address"))
}

fn header_value<'a>(rej: &'a Rejection, name: &str) -> Option<&'a str> {
    rej.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The 400 a UA sends for a datagram whose head parsed but whose body did
/// not frame.
fn framing_response(err: &ParseError) -> Response {
    let ParseError::BadBody { reason, .. } = err else {
        panic!("expected a body framing error, got {err:?}")
    };
    let head = err.head_request().expect("the head is a request");
    build_error_response(head, &Rejection::bad_framing(reason), "uas-tag")
}

// ------------------------------------------------- RFC 4475 §3.1.1 valid

#[test]
fn wsinv_short_tortuous_invite_parses_rfc4475_3_1_1_1() {
    let r = req4475("wsinv");
    assert_eq!(r.method, Method::Invite);
    let u = ruri(&r);
    let s = sip(&u);
    assert_eq!(s.user.as_deref(), Some("vivekg"));
    assert_eq!(s.host, name("chair-dnrc.example.com"));
    assert_eq!(s.params.get("unknownparam"), Some(None));
    let h = &r.headers;
    let to = h.to_addr().unwrap();
    assert_eq!(to.uri.to_string(), "sip:vivekg@chair-dnrc.example.com");
    assert_eq!(to.tag(), Some("1918181833n"));
    let from = h.from_addr().unwrap();
    assert_eq!(from.display.as_deref(), Some(r#"J Rosenberg \""#));
    assert_eq!(from.tag(), Some("98asjd8"));
    assert_eq!(h.max_forwards().unwrap(), Some(68));
    assert_eq!(h.call_id().unwrap(), "wsinv.ndaksdj@192.0.2.1");
    assert_eq!(
        h.cseq().unwrap(),
        CSeq {
            seq: 9,
            method: Method::Invite
        }
    );
    assert_eq!(h.get("Content-Length"), Some("150"));
    assert_eq!(r.body.len(), 150);
    let vias = h.vias().unwrap();
    assert_eq!(vias.len(), 3);
    assert_eq!(
        vias[0].to_string(),
        "SIP/2.0/UDP 192.0.2.2;branch=390skdjuw"
    );
    assert_eq!(
        vias[1].to_string(),
        "SIP/2.0/TCP spindle.example.com;branch=z9hG4bK9ikj8"
    );
    assert_eq!(
        vias[2].to_string(),
        "SIP/2.0/UDP 192.168.255.111;branch=z9hG4bK30239"
    );
    assert_eq!(h.get("Subject"), Some(""));
    assert_eq!(
        h.get("NewFangledHeader"),
        Some("newfangled value continued newfangled value")
    );
    assert_eq!(h.get("UnknownHeaderWithUnusualValue"), Some(";;,,;;,;"));
    let route = h.name_addrs("Route").unwrap();
    assert_eq!(route.len(), 1);
    let rp = &sip(&route[0].uri).params;
    assert_eq!(rp.get("lr"), Some(None));
    assert_eq!(rp.value("unknownwith"), Some("value"));
    assert_eq!(rp.get("unknown-no-value"), Some(None));
    let contacts = h.name_addrs("Contact").unwrap();
    assert_eq!(contacts.len(), 1);
    let c = &contacts[0];
    assert_eq!(c.display.as_deref(), Some(r#"Quoted string """#));
    assert_eq!(c.uri.to_string(), "sip:jdrosen@example.com");
    assert_eq!(c.params.value("newparam"), Some("newvalue"));
    assert_eq!(c.params.get("secondparam"), Some(None));
    assert_eq!(c.params.value("q"), Some("0.33"));
    assert_eq!(verdict(&r), None);
}

#[test]
fn intmeth_wide_range_of_valid_characters_parses_and_gets_501_rfc4475_3_1_1_2() {
    let r = req4475("intmeth");
    let m = "!interesting-Method0123456789_*+`.%indeed'~";
    assert_eq!(r.method, Method::Extension(m.to_string()));
    assert_eq!(
        r.uri,
        "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com"
    );
    let u = ruri(&r);
    let s = sip(&u);
    assert_eq!(
        s.user.as_deref(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(
        s.password.as_deref(),
        Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    );
    assert_eq!(s.host, name("example.com"));
    assert!(s.params.0.is_empty());
    assert!(s.headers.is_none());
    let h = &r.headers;
    assert_eq!(h.top_via().unwrap().branch(), Some("z9hG4bK-.!%66*_+`'~"));
    let to = h.to_addr().unwrap();
    assert_eq!(to.display.as_deref(), Some("BEL:\x07 NUL:\0 DEL:\x7f"));
    assert_eq!(
        sip(&to.uri).user.as_deref(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    let from = h.from_addr().unwrap();
    assert_eq!(
        from.display.as_deref(),
        Some("token1~` token2'+_ token3*%!.-")
    );
    assert_eq!(from.tag(), Some("_token~1'+`*%!-."));
    assert_eq!(
        from.params.value("fromParam''~+*_!.-%"),
        Some("\"\u{440}\u{430}\u{431}\u{43e}\u{442}\u{430}\u{44e}\u{449}\u{438}\u{439}\"")
    );
    assert_eq!(
        h.call_id().unwrap(),
        "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    );
    let cseq = h.cseq().unwrap();
    assert_eq!(cseq.seq, 139122385);
    assert_eq!(cseq.method, Method::Extension(m.to_string()));
    assert_eq!(h.max_forwards().unwrap(), Some(255));
    assert_eq!(
        h.get("extensionHeader-!.%*+_`'~"),
        Some("\u{feff}\u{5927}\u{505c}\u{96fb}")
    );
    let rej = rejection(&r);
    assert_eq!(rej.status, 501);
    assert_eq!(
        header_value(&rej, "Allow"),
        Some("INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, REFER, NOTIFY")
    );
}

#[test]
fn esc01_escapes_are_decoded_once_and_only_where_allowed_rfc4475_3_1_1_3() {
    let r = req4475("esc01");
    let u = ruri(&r);
    let s = sip(&u);
    assert_eq!(s.user_unescaped().as_deref(), Some("sips:user@example.com"));
    assert_eq!(s.host, name("example.net"));
    let h = &r.headers;
    let to = h.to_addr().unwrap();
    assert_eq!(sip(&to.uri).user_unescaped().as_deref(), Some("user"));
    let from = h.from_addr().unwrap();
    assert_eq!(
        sip(&from.uri).user_unescaped().as_deref(),
        Some("I have spaces")
    );
    assert_eq!(from.tag(), Some("938"));
    assert_eq!(h.call_id().unwrap(), "esc01.239409asdfakjkn23onasd0-3234");
    assert_eq!(h.content_type().as_deref(), Some("application/sdp"));
    let contacts = h.name_addrs("Contact").unwrap();
    assert_eq!(contacts.len(), 1);
    let c = sip(&contacts[0].uri);
    assert_eq!(c.user_unescaped().as_deref(), Some("caller"));
    assert_eq!(c.params.get("lr"), Some(None));
    assert_eq!(c.params.value("name"), Some("value%41"));
    assert_eq!(verdict(&r), None);
}

#[test]
fn escnull_escaped_nuls_are_not_truncated_rfc4475_3_1_1_4() {
    let r = req4475("escnull");
    let h = &r.headers;
    for na in [h.to_addr().unwrap(), h.from_addr().unwrap()] {
        assert_eq!(
            sip(&na.uri).user_unescaped().as_deref(),
            Some("null-\0-null")
        );
    }
    let contacts = h.name_addrs("Contact").unwrap();
    let users: Vec<_> = contacts
        .iter()
        .map(|c| sip(&c.uri).user_unescaped().unwrap())
        .collect();
    assert_eq!(users, vec!["\0".to_string(), "\0\0".to_string()]);
    assert_ne!(contacts[0], contacts[1]);
    assert_eq!(
        h.call_id().unwrap(),
        "escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd"
    );
    assert_eq!(h.get("Content-Length"), Some("0"));
    assert!(r.body.is_empty());
    // A UA is not a registrar.
    assert_eq!(verdict(&r), Some(405));
}

#[test]
fn esc02_percent_that_is_not_an_escape_unknown_method_gets_501_rfc4475_3_1_1_5() {
    let r = req4475("esc02");
    assert_eq!(r.method, Method::Extension("RE%47IST%45R".into()));
    assert_ne!(r.method, Method::Register);
    let h = &r.headers;
    assert_eq!(h.to_addr().unwrap().display.as_deref(), Some("%Z%45"));
    assert_eq!(h.from_addr().unwrap().display.as_deref(), Some("%Z%45"));
    assert_eq!(h.top_via().unwrap().branch(), Some("z9hG4bK209%fzsnel234"));
    let contacts = h.name_addrs("Contact").unwrap();
    let hosts: Vec<_> = contacts.iter().map(|c| sip(&c.uri).host.clone()).collect();
    assert_eq!(
        hosts,
        vec![name("host1.example.com"), name("host3.example.com")]
    );
    assert_eq!(h.get("C%6Fntact"), Some("<sip:alias2@host2.example.com>"));
    let rej = rejection(&r);
    assert_eq!(rej.status, 501);
    assert!(header_value(&rej, "Allow").is_some());
}

#[test]
fn lwsdisp_display_name_without_lws_before_angle_rfc4475_3_1_1_6() {
    let r = req4475("lwsdisp");
    let from = r.headers.from_addr().unwrap();
    assert_eq!(from.display.as_deref(), Some("caller"));
    assert_eq!(from.uri.to_string(), "sip:caller@example.com");
    assert_eq!(from.tag(), Some("323"));
    assert_eq!(verdict(&r), None);
}

#[test]
fn longreq_long_values_parse_without_length_limits_rfc4475_3_1_1_7() {
    let r = req4475("longreq");
    let h = &r.headers;
    let vias = h.vias().unwrap();
    assert_eq!(vias.len(), 34);
    assert_eq!(vias[0].transport, "TCP");
    assert_eq!(vias[0].host, name("sip33.example.com"));
    let last = vias.last().unwrap();
    assert_eq!(last.host, name("host.example.com"));
    assert_eq!(
        last.received_ip(),
        Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 5)))
    );
    assert!(last.branch().unwrap().starts_with("verylong"));
    assert!(last.branch().unwrap().ends_with("branchvalue"));
    let to = h.to_addr().unwrap();
    assert!(
        to.display
            .as_deref()
            .unwrap()
            .contains("extreme proportion")
    );
    let tu = sip(&to.uri);
    assert_eq!(tu.port, Some(6000));
    let long = tu
        .params
        .0
        .iter()
        .find(|(n, _)| n.starts_with("longparamname"))
        .expect("the long parameter name");
    assert_eq!(long.1.as_deref(), Some("shortvalue"));
    assert_eq!(
        tu.params.get("verylonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglongParameterNameWithNoValue"),
        Some(None)
    );
    let from = h.from_addr().unwrap();
    assert!(from.tag().unwrap().len() > 150);
    assert!(h.call_id().unwrap().starts_with("longreq.onereally"));
    assert_eq!(h.get("l"), Some("150"));
    assert_eq!(r.body.len(), 150);
    assert_eq!(verdict(&r), None);
}

#[test]
fn dblreq_trailing_octets_in_udp_datagram_are_ignored_rfc4475_3_1_1_8() {
    let d = t4475("dblreq");
    let r = as_request(&d);
    assert_eq!(r.method, Method::Register);
    assert_eq!(
        r.headers.call_id().unwrap(),
        "dblreq.0ha0isndaksdj99sdfafnl3lk233412"
    );
    assert!(r.body.is_empty());
    assert!(r.to_bytes().len() < d.len());
}

#[test]
fn semiuri_user_part_holds_semicolons_and_no_uri_params_rfc4475_3_1_1_9() {
    let r = req4475("semiuri");
    let u = ruri(&r);
    let s = sip(&u);
    assert_eq!(
        s.user_unescaped().as_deref(),
        Some("user;par=u@example.net")
    );
    assert_eq!(s.host, name("example.com"));
    assert!(s.params.0.is_empty());
    assert_eq!(
        r.headers.list("Accept"),
        vec![
            "application/sdp",
            "application/pkcs7-mime",
            "multipart/mixed",
            "multipart/signed",
            "message/sip",
            "message/sipfrag"
        ]
    );
    assert_eq!(verdict(&r), None);
}

#[test]
fn transports_unknown_transport_tokens_are_legal_rfc4475_3_1_1_10() {
    let r = req4475("transports");
    let t: Vec<_> = r
        .headers
        .vias()
        .unwrap()
        .into_iter()
        .map(|v| v.transport)
        .collect();
    assert_eq!(t, vec!["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
    assert_eq!(
        r.headers.call_id().unwrap(),
        "transports.kijh4akdnaqjkwendsasfdj"
    );
    assert_eq!(verdict(&r), None);
}

#[test]
fn mpart01_binary_multipart_body_is_framed_by_content_length_rfc4475_3_1_1_11() {
    let d = t4475("mpart01");
    let r = as_request(&d);
    assert_eq!(r.method, Method::Message);
    assert_eq!(
        r.headers.get("Content-Type"),
        Some("multipart/mixed;boundary=7a9cbec02ceef655")
    );
    assert_eq!(r.body.len(), 553);
    assert_eq!(&d[d.len() - 553..], &r.body[..]);
    assert_eq!(r.body.iter().filter(|&&b| b == 0).count(), 2);
    assert!(r.body.windows(5).any(|w| w == b"Hello"));
    // MESSAGE is not a method we implement.
    assert_eq!(verdict(&r), Some(405));
}

#[test]
fn unreason_utf8_reason_phrase_rfc4475_3_1_1_12() {
    let r = as_response(&t4475("unreason"));
    assert_eq!(r.status, 200);
    assert_eq!(r.reason, "= 2**3 * 5**2 но сто девяносто девять - простое");
    assert_eq!(
        r.headers.call_id().unwrap(),
        "unreason.1234ksdfak3j2erwedfsASdf"
    );
    assert_eq!(check_response(&r), Ok(()));
}

#[test]
fn noreason_empty_reason_phrase_rfc4475_3_1_1_13() {
    let r = as_response(&t4475("noreason"));
    assert_eq!(r.status, 100);
    assert_eq!(r.reason, "");
    assert_eq!(check_response(&r), Ok(()));
}

// ----------------------------------------------- RFC 4475 §3.1.2 invalid

#[test]
fn badinv01_extraneous_separators_get_400_rfc4475_3_1_2_1() {
    let r = req4475("badinv01");
    assert!(r.headers.vias().is_err());
    assert!(r.headers.name_addrs("Contact").is_err());
    assert_eq!(verdict(&r), Some(400));
}

#[test]
fn clerr_content_length_larger_than_datagram_gets_400_rfc4475_3_1_2_2() {
    let err = parse_datagram(&t4475("clerr")).unwrap_err();
    assert!(matches!(
        err,
        ParseError::BadBody {
            reason: BodyError::Truncated {
                declared: 9999,
                available: 154
            },
            ..
        }
    ));
    assert_eq!(framing_response(&err).status, 400);
}

#[test]
fn ncl_negative_content_length_gets_400_rfc4475_3_1_2_3() {
    let err = parse_datagram(&t4475("ncl")).unwrap_err();
    assert!(matches!(
        err,
        ParseError::BadBody {
            reason: BodyError::InvalidLength { .. },
            ..
        }
    ));
    assert_eq!(framing_response(&err).status, 400);
    let five = String::from_utf8(t4475("ncl"))
        .unwrap()
        .replace("-999", "five");
    assert!(matches!(
        parse_datagram(five.as_bytes()),
        Err(ParseError::BadBody {
            reason: BodyError::InvalidLength { .. },
            ..
        })
    ));
}

#[test]
fn scalar02_overlarge_cseq_gets_400_rfc4475_3_1_2_4() {
    let r = req4475("scalar02");
    assert!(r.headers.cseq().is_err());
    assert!(r.headers.max_forwards().is_err());
    assert_eq!(verdict(&r), Some(400));
}

#[test]
fn scalarlg_response_with_overlarge_values_is_discarded_rfc4475_3_1_2_5() {
    let r = as_response(&t4475("scalarlg"));
    assert_eq!(r.status, 503);
    assert!(matches!(check_response(&r), Err(ResponseDefect::Header(_))));
}

#[test]
fn quotbal_unterminated_quote_gets_400_rfc4475_3_1_2_6() {
    let r = req4475("quotbal");
    assert!(r.headers.to_addr().is_err());
    assert_eq!(verdict(&r), Some(400));
}

#[test]
fn ltgtruri_request_uri_in_angle_brackets_gets_400_rfc4475_3_1_2_7() {
    let r = req4475("ltgtruri");
    assert_eq!(r.uri, "<sip:user@example.com>");
    assert!(Uri::parse(&r.uri).is_err());
    assert_eq!(verdict(&r), Some(400));
}

#[test]
fn lwsruri_request_uri_with_embedded_lws_gets_400_rfc4475_3_1_2_8() {
    let r = req4475("lwsruri");
    assert!(Uri::parse(&r.uri).is_err());
    assert_eq!(verdict(&r), Some(400));
}

#[test]
fn lwsstart_extra_spaces_in_request_line_are_tolerated_rfc4475_3_1_2_9() {
    let r = req4475("lwsstart");
    assert_eq!(r.method, Method::Invite);
    assert_eq!(r.uri, "sip:user@example.com");
    assert_eq!(r.version, "SIP/2.0");
    assert_eq!(verdict(&r), None);
}

#[test]
fn trws_trailing_spaces_in_request_line_are_tolerated_rfc4475_3_1_2_10() {
    let r = req4475("trws");
    assert_eq!(r.method, Method::Options);
    assert_eq!(r.version, "SIP/2.0");
    assert_eq!(verdict(&r), None);
}

#[test]
fn escruri_request_uri_with_escaped_headers_gets_400_rfc4475_3_1_2_11() {
    let r = req4475("escruri");
    let u = ruri(&r);
    assert_eq!(
        sip(&u).header_pairs(),
        vec![("Route".to_string(), "<sip:example.com>".to_string())]
    );
    assert_eq!(verdict(&r), Some(400));
}

#[test]
fn baddate_invalid_date_is_ignored_rfc4475_3_1_2_12() {
    let r = req4475("baddate");
    assert!(r.headers.get("Date").unwrap().ends_with("EST"));
    assert_eq!(verdict(&r), None);
}

#[test]
fn regbadct_contact_with_headers_outside_angles_gets_400_rfc4475_3_1_2_13() {
    let r = req4475("regbadct");
    assert!(r.headers.name_addrs("Contact").is_err());
    assert_eq!(verdict(&r), Some(400));
}

#[test]
fn badaspec_spaces_inside_angles_get_400_rfc4475_3_1_2_14() {
    let r = req4475("badaspec");
    assert!(r.headers.to_addr().is_err());
    assert_eq!(verdict(&r), Some(400));
    let resp = build_error_response(&r, &rejection(&r), "t");
    // The To that did not parse is copied as received.
    assert_eq!(resp.headers.get("To"), r.headers.get("To"));
}

#[test]
fn baddn_archive_file_is_incomplete_and_dropped_over_udp_rfc4475_3_1_2_15() {
    let d = t4475("baddn");
    assert!(d.ends_with(b"l: 0\r\n"));
    assert_eq!(parse_datagram(&d), Err(ParseError::Incomplete));
    assert!(ParseError::Incomplete.head().is_none());
    // Appending the missing CRLF gives the terminated variant.
    let mut fixed = d.clone();
    fixed.extend_from_slice(b"\r\n");
    assert_eq!(fixed, data("rfc4475/variants/baddn.terminated.dat"));
}

#[test]
fn baddn_terminated_non_token_display_names_get_400_rfc4475_3_1_2_15() {
    let r = as_request(&data("rfc4475/variants/baddn.terminated.dat"));
    assert!(r.headers.from_addr().is_err());
    assert!(r.headers.to_addr().is_err());
    assert_eq!(verdict(&r), Some(400));
}

#[test]
fn badvers_unknown_version_gets_505_rfc4475_3_1_2_16() {
    let r = req4475("badvers");
    assert_eq!(r.version, "SIP/7.0");
    let rej = rejection(&r);
    assert_eq!(rej.status, 505);
    assert_eq!(rej.reason, "Version Not Supported");
}

#[test]
fn mismatch01_cseq_method_mismatch_gets_400_rfc4475_3_1_2_17() {
    let r = req4475("mismatch01");
    assert_eq!(r.method, Method::Options);
    assert_eq!(r.headers.cseq().unwrap().method, Method::Invite);
    assert_eq!(verdict(&r), Some(400));
}

#[test]
fn mismatch02_unknown_method_with_mismatch_gets_501_first_rfc4475_3_1_2_18() {
    let r = req4475("mismatch02");
    assert_eq!(r.method, Method::Extension("NEWMETHOD".into()));
    assert_eq!(verdict(&r), Some(501));
}

#[test]
fn bigcode_overlarge_status_code_is_dropped_not_wrapped_rfc4475_3_1_2_19() {
    let err = parse_datagram(&t4475("bigcode")).unwrap_err();
    assert!(matches!(err, ParseError::BadStatusCode { .. }));
    assert!(err.head().is_none());
}

// -------------------------------------------- RFC 4475 §3.2 transactions

#[test]
fn badbranch_bare_magic_cookie_parses_and_gets_400_rfc4475_3_2_1() {
    let r = req4475("badbranch");
    assert_eq!(r.headers.top_via().unwrap().branch(), Some("z9hG4bK"));
    assert_eq!(verdict(&r), Some(400));
}

// --------------------------------------- RFC 4475 §3.3 application layer

#[test]
fn insuf_missing_required_headers_get_400_rfc4475_3_3_1() {
    let r = req4475("insuf");
    assert!(r.headers.to_addr().is_err());
    assert!(r.headers.from_addr().is_err());
    assert!(r.headers.call_id().is_err());
    assert_eq!(r.body.len(), 152);
    assert_eq!(verdict(&r), Some(400));
    let resp = build_error_response(&r, &rejection(&r), "t");
    assert_eq!(resp.headers.count("To"), 0);
    assert_eq!(resp.headers.get("CSeq"), r.headers.get("CSeq"));
}

#[test]
fn unkscm_unknown_request_uri_scheme_gets_416_rfc4475_3_3_2() {
    let r = req4475("unkscm");
    match ruri(&r) {
        Uri::Other { scheme, .. } => assert_eq!(scheme, "nobodyKnowsThisScheme"),
        other => panic!("expected an opaque URI, got {other:?}"),
    }
    assert_eq!(verdict(&r), Some(416));
}

#[test]
fn novelsc_atypical_scheme_gets_416_rfc4475_3_3_3() {
    let r = req4475("novelsc");
    assert_eq!(r.uri, "soap.beep://192.0.2.103:3002");
    assert!(matches!(ruri(&r), Uri::Other { ref scheme, .. } if scheme == "soap.beep"));
    assert_eq!(verdict(&r), Some(416));
}

#[test]
fn unksm2_unknown_schemes_in_headers_parse_rfc4475_3_3_4() {
    let r = req4475("unksm2");
    let h = &r.headers;
    assert_eq!(h.to_addr().unwrap().uri.to_string(), "isbn:2983792873");
    assert_eq!(
        h.from_addr().unwrap().uri.to_string(),
        "http://www.example.com"
    );
    assert_eq!(
        h.name_addrs("Contact").unwrap()[0].uri.to_string(),
        "name:John_Smith"
    );
    // REGISTER to a UA.
    assert_eq!(verdict(&r), Some(405));
}

#[test]
fn bext01_unknown_require_gets_420_with_unsupported_rfc4475_3_3_5() {
    let r = req4475("bext01");
    let rej = rejection(&r);
    assert_eq!(rej.status, 420);
    assert_eq!(
        header_value(&rej, "Unsupported"),
        Some("nothingSupportsThis, nothingSupportsThisEither")
    );
    let resp = build_error_response(&r, &rej, "t");
    assert_eq!(
        resp.headers.get("Unsupported"),
        Some("nothingSupportsThis, nothingSupportsThisEither")
    );
}

#[test]
fn invut_unknown_content_type_gets_415_with_accept_rfc4475_3_3_6() {
    let r = req4475("invut");
    assert_eq!(
        r.headers.content_type().as_deref(),
        Some("application/unknownformat")
    );
    assert_eq!(r.body.len(), 40);
    let rej = rejection(&r);
    assert_eq!(rej.status, 415);
    assert_eq!(header_value(&rej, "Accept"), Some("application/sdp"));
}

#[test]
fn regaut01_register_to_a_ua_gets_405_with_allow_rfc4475_3_3_7() {
    let r = req4475("regaut01");
    assert_eq!(
        r.headers.get("Authorization"),
        Some("NoOneKnowsThisScheme opaque-data=here")
    );
    assert_eq!(r.headers.get("Content-Length"), Some("0"));
    let rej = rejection(&r);
    assert_eq!(rej.status, 405);
    let allow = header_value(&rej, "Allow").unwrap();
    for m in ALLOWED_METHODS {
        assert!(allow.contains(m.as_str()));
    }
}

#[test]
fn multi01_repeated_single_value_headers_get_400_rfc4475_3_3_8() {
    let r = req4475("multi01");
    assert!(r.headers.cseq().is_err());
    assert!(r.headers.call_id().is_err());
    assert!(r.headers.to_addr().is_err());
    assert!(r.headers.from_addr().is_err());
    assert_eq!(verdict(&r), Some(400));
}

#[test]
fn mcl01_conflicting_content_lengths_get_400_rfc4475_3_3_9() {
    let err = parse_datagram(&t4475("mcl01")).unwrap_err();
    assert!(matches!(
        err,
        ParseError::BadBody {
            reason: BodyError::ConflictingLengths { .. },
            ..
        }
    ));
    let resp = framing_response(&err);
    assert_eq!(resp.status, 400);
    assert_eq!(resp.headers.get("Content-Length"), Some("0"));
}

#[test]
fn bcast_response_with_two_vias_is_discarded_by_uac_rfc4475_3_3_10() {
    let r = as_response(&t4475("bcast"));
    let vias = r.headers.vias().unwrap();
    assert_eq!(vias.len(), 2);
    assert_eq!(vias[1].host, v4("255.255.255.255"));
    assert_eq!(
        check_response(&r),
        Err(ResponseDefect::ViaCount { count: 2 })
    );
}

#[test]
fn zeromf_max_forwards_zero_is_processed_by_an_endpoint_rfc4475_3_3_11() {
    let r = req4475("zeromf");
    assert_eq!(r.headers.max_forwards().unwrap(), Some(0));
    assert_eq!(verdict(&r), None);
}

#[test]
fn cparam01_contact_param_without_angles_is_a_header_param_rfc4475_3_3_12() {
    let r = req4475("cparam01");
    let c = &r.headers.name_addrs("Contact").unwrap()[0];
    assert_eq!(c.params.get("unknownparam"), Some(None));
    assert!(sip(&c.uri).params.0.is_empty());
    assert_eq!(sip(&c.uri).user.as_deref(), Some("+19725552222"));
}

#[test]
fn cparam02_contact_param_inside_angles_is_a_uri_param_rfc4475_3_3_13() {
    let r = req4475("cparam02");
    let c = &r.headers.name_addrs("Contact").unwrap()[0];
    assert_eq!(sip(&c.uri).params.get("unknownparam"), Some(None));
    assert!(c.params.0.is_empty());
}

#[test]
fn regescrt_contact_keeps_its_escaped_route_header_rfc4475_3_3_14() {
    let r = req4475("regescrt");
    let c = &r.headers.name_addrs("Contact").unwrap()[0];
    let u = sip(&c.uri);
    assert_eq!(
        u.headers.as_deref(),
        Some("Route=%3Csip:sip.example.com%3E")
    );
    assert_eq!(
        u.header_pairs(),
        vec![("Route".to_string(), "<sip:sip.example.com>".to_string())]
    );
    assert_eq!(
        c.uri.to_string(),
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E"
    );
    assert_eq!(r.headers.get("L"), Some("0"));
}

#[test]
fn sdp01_accept_without_sdp_gets_406_rfc4475_3_3_15() {
    let r = req4475("sdp01");
    assert_eq!(r.headers.get("Accept"), Some("text/nobodyKnowsThis"));
    assert_eq!(verdict(&r), Some(406));
}

// ------------------------------------- RFC 4475 §3.4 backward compatibility

#[test]
fn inv2543_rfc2543_invite_without_content_length_is_accepted_rfc4475_3_4_1() {
    let d = t4475("inv2543");
    let r = as_request(&d);
    assert!(r.headers.get("Content-Length").is_none());
    assert_eq!(r.body.len(), 105);
    assert!(d.ends_with(&r.body));
    assert_eq!(r.headers.top_via().unwrap().branch(), None);
    assert_eq!(r.headers.from_addr().unwrap().tag(), None);
    assert_eq!(r.headers.max_forwards().unwrap(), None);
    let rr = &r.headers.name_addrs("Record-Route").unwrap()[0];
    assert_eq!(sip(&rr.uri).params.value("maddr"), Some("ss1.example.com"));
    let to = r.headers.to_addr().unwrap();
    assert_eq!(to.params.value("user"), Some("phone"));
    assert_eq!(verdict(&r), None);
}

#[test]
fn test_dat_without_version_is_dropped_rfc4475_archive_extra() {
    let err = parse_datagram(&t4475("test")).unwrap_err();
    assert!(err.head().is_none());
}

// ------------------------------------------------------------- RFC 5118

#[test]
fn ipv6_good_bracketed_request_uri_rfc5118_4_1() {
    let r = as_request(&t5118("ipv6-good"));
    let u = ruri(&r);
    assert_eq!(sip(&u).host, v6("2001:db8::10"));
    assert_eq!(sip(&u).port, None);
    assert_eq!(r.headers.top_via().unwrap().sent_by(), "[2001:db8::9:1]");
    let c = &r.headers.name_addrs("Contact").unwrap()[0];
    assert_eq!(c.display.as_deref(), Some("Caller"));
    assert_eq!(sip(&c.uri).host, v6("2001:db8::1"));
    assert_eq!(verdict(&r), Some(405));
}

#[test]
fn ipv6_bad_unbracketed_request_uri_gets_400_rfc5118_4_2() {
    let r = as_request(&t5118("ipv6-bad"));
    assert!(Uri::parse(&r.uri).is_err());
    assert_eq!(verdict(&r), Some(400));
}

#[test]
fn port_ambiguous_last_group_is_not_a_port_rfc5118_4_3() {
    let r = as_request(&t5118("port-ambiguous"));
    let u = ruri(&r);
    assert_eq!(sip(&u).host, v6("2001:db8::10:5070"));
    assert_eq!(sip(&u).port, None);
}

#[test]
fn port_unambiguous_port_after_bracket_rfc5118_4_4() {
    let r = as_request(&t5118("port-unambiguous"));
    let u = ruri(&r);
    assert_eq!(sip(&u).host, v6("2001:db8::10"));
    assert_eq!(sip(&u).port, Some(5070));
}

#[test]
fn via_received_with_and_without_brackets_are_equal_rfc5118_4_5() {
    let want: IpAddr = "2001:db8::9:255".parse().unwrap();
    let with = as_request(&t5118("via-received-param-with-delim"));
    let without = as_request(&t5118("via-received-param-no-delim"));
    for r in [&with, &without] {
        let via = r.headers.top_via().unwrap();
        assert_eq!(via.received_ip(), Some(want));
        assert_eq!(via.host, v6("2001:db8::9:1"));
        assert_eq!(verdict(r), None);
    }
    assert_eq!(
        without.headers.top_via().unwrap().branch(),
        Some("z9hG4bKas3")
    );
}

#[test]
fn ipv6_in_sdp_cl_fixed_parses_and_original_gets_400_rfc5118_4_6() {
    let r = as_request(&data("rfc5118/variants/ipv6-in-sdp.cl-fixed.dat"));
    assert_eq!(r.body.len(), 251);
    let sdp = String::from_utf8(r.body.clone()).unwrap();
    assert!(sdp.contains("c=IN IP6 2001:db8::20"));
    assert_eq!(sip(&ruri(&r)).host, v6("2001:db8::10"));
    assert_eq!(r.headers.top_via().unwrap().host, v6("2001:db8::20"));
    assert_eq!(verdict(&r), None);
    // The original declares 268 for a 251-byte body: 400 over UDP.
    let err = parse_datagram(&t5118("ipv6-in-sdp")).unwrap_err();
    assert!(matches!(
        err,
        ParseError::BadBody {
            reason: BodyError::Truncated {
                declared: 268,
                available: 251
            },
            ..
        }
    ));
    assert_eq!(framing_response(&err).status, 400);
}

#[test]
fn mult_ip_in_header_three_vias_rfc5118_4_7() {
    let r = as_request(&t5118("mult-ip-in-header"));
    let vias = r.headers.vias().unwrap();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[0].host, v6("2001:db8::9:1"));
    assert_eq!(vias[0].port, Some(6050));
    assert_eq!(vias[1].host, v4("192.0.2.1"));
    assert_eq!(vias[2].transport, "TCP");
    assert_eq!(vias[2].host, v6("2001:db8::9:255"));
    assert_eq!(
        vias[2].received_ip(),
        Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 200)))
    );
    assert_eq!(verdict(&r), None);
}

#[test]
fn mult_ip_in_sdp_cl_fixed_and_short_original_rfc5118_4_8() {
    let r = as_request(&data("rfc5118/variants/mult-ip-in-sdp.cl-fixed.dat"));
    assert_eq!(r.body.len(), 189);
    let sdp = String::from_utf8(r.body.clone()).unwrap();
    assert!(sdp.contains("c=IN IP4 192.0.2.1"));
    assert!(sdp.contains("c=IN IP6 2001:db8::1"));
    // The original declares 181 of 189 bytes: over UDP the rest is cut
    // (RFC 3261 §18.3).
    let orig = as_request(&t5118("mult-ip-in-sdp"));
    assert_eq!(orig.body.len(), 181);
    assert_eq!(orig.body[..], r.body[..181]);
}

#[test]
fn ipv4_mapped_ipv6_cl_fixed_and_short_original_rfc5118_4_9() {
    let r = as_request(&data("rfc5118/variants/ipv4-mapped-ipv6.cl-fixed.dat"));
    let vias = r.headers.vias().unwrap();
    assert_eq!(vias[0].host, v6("::ffff:192.0.2.10"));
    assert_eq!(vias[0].port, Some(19823));
    assert_eq!(vias[1].host, v6("::ffff:192.0.2.2"));
    let c = &r.headers.name_addrs("Contact").unwrap()[0];
    assert_eq!(sip(&c.uri).host, v6("::ffff:192.0.2.2"));
    assert_eq!(c.display.as_deref(), Some("T. desk phone"));
    assert_eq!(r.body.len(), 245);
    assert!(String::from_utf8_lossy(&r.body).contains("IN IP6 ::ffff:192.0.2.2"));
    let orig = as_request(&t5118("ipv4-mapped-ipv6"));
    assert_eq!(orig.body.len(), 236);
}

#[test]
fn three_colon_ipv6_is_tolerated_as_the_two_colon_form_rfc5118_4_10() {
    let three = as_request(&t5118("ipv6-bug-abnf-3-colons"));
    let two = as_request(&t5118("ipv6-correct-abnf-2-colons"));
    let want = v6("2001:db8::192.0.2.1");
    for r in [&three, &two] {
        assert_eq!(sip(&ruri(r)).host, want);
        assert_eq!(sip(&r.headers.to_addr().unwrap().uri).host, want);
        assert_eq!(verdict(r), None);
    }
    // Re-serialized without the extra colon.
    assert_eq!(ruri(&three).to_string(), "sip:user@[2001:db8::c000:201]");
}

// -------------------------------------------------------------- bug cases

#[test]
fn bug01_compact_headers_in_401_are_found_by_long_names() {
    let r = as_response(&data("bugs/01-compact-headers-401.sip"));
    let h = &r.headers;
    assert_eq!(h.top_via().unwrap().branch(), Some("z9hG4bK-reg-1"));
    assert_eq!(h.get("Via"), h.get("v"));
    assert_eq!(h.from_addr().unwrap().tag(), Some("a1b2c3"));
    assert_eq!(h.to_addr().unwrap().tag(), Some("srv-99"));
    assert_eq!(h.call_id().unwrap(), "reg-callid-1@192.0.2.10");
    assert_eq!(h.cseq().unwrap().method, Method::Register);
    assert_eq!(h.get("Content-Length"), Some("0"));
    assert_eq!(check_response(&r), Ok(()));
}

#[test]
fn bug02_two_vias_on_one_line_are_two_values() {
    let r = as_response(&data("bugs/02-two-vias-one-line.sip"));
    let vias = r.headers.vias().unwrap();
    assert_eq!(vias.len(), 2);
    assert_eq!(vias[0].branch(), Some("z9hG4bKkwpQ8Rq2"));
    assert_eq!(
        vias[0].to_string(),
        "SIP/2.0/UDP 192.0.2.22:5062;received=192.0.2.22;rport=5062;branch=z9hG4bKkwpQ8Rq2"
    );
    assert_eq!(
        check_response(&r),
        Err(ResponseDefect::ViaCount { count: 2 })
    );
    let mut h = r.headers.clone();
    h.remove_first_value("Via");
    assert_eq!(h.vias().unwrap()[0].branch(), Some("z9hG4bK20ede051"));
}

#[test]
fn bug03_folded_www_authenticate_unfolds_rfc3261_7_3_1() {
    let r = as_response(&data("bugs/03-folded-www-authenticate.sip"));
    let v = r.headers.get("WWW-Authenticate").unwrap();
    assert_eq!(
        v,
        "Digest realm=\"example.com\", nonce=\"abcdefghijklmnopqrstuvwxyz=\", \
opaque=\"XYZ:abcdefghijklmnopqrstuvwxyz__\", algorithm=AKAv1-MD5, qop=\"auth\""
    );
    let via = r.headers.top_via().unwrap();
    assert_eq!(via.received_ip(), Some("2001:db8::1".parse().unwrap()));
    assert_eq!(via.rport(), Some(Some(48512)));
    assert_eq!(check_response(&r), Ok(()));
}

#[test]
fn bug19a_bytes_beyond_content_length_are_discarded_rfc3261_18_3() {
    let r = as_request(&data("bugs/19a-udp-trailing-bytes.sip"));
    assert!(r.body.is_empty());
    assert_eq!(verdict(&r), None);
}

#[test]
fn bug19b_absurd_content_length_gets_400_without_allocating() {
    let err = parse_datagram(&data("bugs/19b-absurd-content-length.sip")).unwrap_err();
    assert!(matches!(
        err,
        ParseError::BadBody {
            reason: BodyError::Truncated {
                declared: 4294967295,
                ..
            },
            ..
        }
    ));
    let resp = framing_response(&err);
    assert_eq!(resp.status, 400);
    assert_eq!(resp.headers.to_addr().unwrap().tag(), Some("uas-tag"));
    assert_eq!(
        resp.headers.top_via().unwrap().branch(),
        Some("z9hG4bK-opt-19")
    );
}

#[test]
fn bug19c_invite_with_content_length_beyond_body_gets_400() {
    let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r\n\
m=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";
    let sdp = format!("{sdp}{}", "a=x\r\n".repeat((150 - sdp.len()) / 5));
    let sdp = format!("{sdp}{}", "x".repeat(150 - sdp.len()));
    assert_eq!(sdp.len(), 150);
    let msg = format!(
        "INVITE sip:alice@192.0.2.10 SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.9:5060;branch=z9hG4bK-inv-19\r\n\
Max-Forwards: 70\r\nFrom: <sip:bob@example.net>;tag=b19\r\nTo: <sip:alice@192.0.2.10>\r\n\
Call-ID: c-19@198.51.100.9\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@198.51.100.9>\r\n\
Content-Type: application/sdp\r\nContent-Length: 200\r\n\r\n{sdp}"
    );
    let err = parse_datagram(msg.as_bytes()).unwrap_err();
    assert_eq!(framing_response(&err).status, 400);
    let ok = msg.replace("Content-Length: 200", "Content-Length: 150");
    assert_eq!(verdict(&as_request(ok.as_bytes())), None);
}

// ------------------------------------------- error responses, §8.2.6

#[test]
fn error_response_copies_raw_headers_and_prints_rfc3261_8_2_6() {
    let r = req4475("wsinv");
    let rej = Rejection::new(486, "test");
    let resp = build_error_response(&r, &rej, "abc");
    let names: Vec<_> = resp
        .headers
        .iter()
        .map(|h| h.canonical_name().to_ascii_lowercase())
        .collect();
    assert_eq!(
        names,
        vec![
            "via",
            "via",
            "from",
            "to",
            "call-id",
            "cseq",
            "content-length"
        ]
    );
    // To already has a tag: unchanged.
    assert_eq!(resp.headers.to_addr().unwrap().tag(), Some("1918181833n"));
    let bytes = resp.to_bytes();
    let reparsed = as_response(&bytes);
    assert_eq!(reparsed.status, 486);
    assert_eq!(reparsed.headers.vias().unwrap().len(), 3);
    assert_eq!(reparsed.headers.cseq().unwrap().seq, 9);
    assert!(reparsed.body.is_empty());
}

// ------------------------------------------------- printing, round trips

#[test]
fn received_messages_print_back_byte_exactly() {
    for name in [
        "wsinv", "longreq", "intmeth", "mpart01", "esc01", "unreason", "noreason",
    ] {
        let d = t4475(name);
        let msg = parse_datagram(&d).unwrap();
        assert_eq!(msg.to_bytes(), d, "{name}");
    }
}

#[test]
fn via_display_round_trips() {
    for s in [
        "SIP/2.0/UDP 192.0.2.2;branch=z9hG4bK390skdjuw",
        "SIP/2.0/TCP [2001:db8::9:255]:5061;branch=z9hG4bK451jj;received=192.0.2.200",
        "SIP/2.0/UDP host.example.com;rport;branch=z9hG4bK-.!%66*_+`'~",
        "SIP/2.0/UNKNOWN t4.example.com;received=[2001:db8::9:255]",
    ] {
        let v = Via::parse(s).unwrap();
        assert_eq!(v.to_string(), s);
        assert_eq!(Via::parse(&v.to_string()).unwrap(), v);
    }
    let v = Via::new("UDP", v6("2001:db8::1"), 5062, "z9hG4bKx");
    assert_eq!(
        v.to_string(),
        "SIP/2.0/UDP [2001:db8::1]:5062;branch=z9hG4bKx;rport"
    );
    assert_eq!(Via::parse(&v.to_string()).unwrap(), v);
}

#[test]
fn cseq_display_round_trips() {
    for (s, want) in [
        ("1 INVITE", "1 INVITE"),
        ("0009   INVITE", "9 INVITE"),
        ("4294967295 RE%47IST%45R", "4294967295 RE%47IST%45R"),
    ] {
        let c = CSeq::parse(s).unwrap();
        assert_eq!(c.to_string(), want);
        assert_eq!(CSeq::parse(&c.to_string()).unwrap(), c);
    }
    assert!(CSeq::parse("4294967296 INVITE").is_err());
}

#[test]
fn name_addr_display_round_trips_including_control_characters() {
    for s in [
        "<sip:a@example.com>;tag=1",
        "\"J Rosenberg \\\\\\\"\" <sip:jdrosen@example.com>;tag=98asjd8",
        "\"BEL:\\\x07 NUL:\\\0 DEL:\\\x7f\" <sip:x@example.com>",
        "\"\u{437}\u{434}\u{440}\" <sips:u@[2001:db8::1]:5061;transport=tcp>;expires=60",
        "<sip:user@example.com?Route=%3Csip:sip.example.com%3E>",
        "<isbn:2983792873>",
    ] {
        let na = NameAddr::parse(s).unwrap();
        assert_eq!(na.to_string(), s);
        assert_eq!(NameAddr::parse(&na.to_string()).unwrap(), na);
    }
    // Unquoted display names come out quoted, addr-specs bracketed.
    let na = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
    assert_eq!(
        na.to_string(),
        "\"caller\" <sip:caller@example.com>;tag=323"
    );
    let na = NameAddr::parse("sip:+1@gw1.example.net;unknownparam").unwrap();
    assert_eq!(na.to_string(), "<sip:+1@gw1.example.net>;unknownparam");
    assert_eq!(NameAddr::parse(&na.to_string()).unwrap(), na);
}

#[test]
fn uri_display_round_trips_and_escapes_uri_params_once() {
    for s in [
        "sip:alice@example.com",
        "sips:alice:pw@[2001:db8::10]:5070;transport=tcp;lr?Subject=x&Priority=urgent",
        "sip:user;par=u%40example.net@example.com",
        "sip:%00@host5.example.com",
        "tel:+1-201-555-0123",
        "nobodyKnowsThisScheme:totallyopaquecontent",
        "sip:192.0.2.1:5060;maddr=[2001:db8::1]",
    ] {
        let u = Uri::parse(s).unwrap();
        assert_eq!(u.to_string(), s);
        assert_eq!(Uri::parse(&u.to_string()).unwrap(), u);
    }
    // Parameters are unescaped once and escaped again when printed.
    let u = Uri::parse("sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31").unwrap();
    assert_eq!(
        u.to_string(),
        "sip:cal%6Cer@host5.example.net;lr;name=value%2541"
    );
    assert_eq!(Uri::parse(&u.to_string()).unwrap(), u);
}

#[test]
fn ipv6_host_display_uses_brackets_rfc5118() {
    let h = Host::from_ip(IpAddr::V6(Ipv6Addr::LOCALHOST));
    assert_eq!(h.to_string(), "[::1]");
    let u = SipUri::new(Some("bob"), h, Some(5060));
    assert_eq!(u.to_string(), "sip:bob@[::1]:5060");
}

// ------------------------------------------------------------- robustness

fn all_torture_messages() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for dir in [
        "rfc4475",
        "rfc4475/variants",
        "rfc5118",
        "rfc5118/variants",
        "bugs",
    ] {
        let path = format!("{}/tests/data/{dir}", env!("CARGO_MANIFEST_DIR"));
        let mut files: Vec<_> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "dat" || e == "sip"))
            .collect();
        files.sort();
        out.extend(files.into_iter().map(|p| std::fs::read(p).unwrap()));
    }
    out
}

/// Runs everything a receiver would run on a datagram.
fn exercise(d: &[u8]) {
    match parse_datagram(d) {
        Ok(SipMessage::Request(r)) => {
            exercise_headers(&r.headers);
            if let Ok(u) = Uri::parse(&r.uri) {
                assert_eq!(Uri::parse(&u.to_string()).as_ref(), Ok(&u), "{u}");
            }
            let rej = check_request(&r)
                .err()
                .unwrap_or_else(|| Rejection::new(200, "ok"));
            let resp = build_error_response(&r, &rej, "fuzz");
            let _ = parse_datagram(&resp.to_bytes());
            let _ = r.to_bytes();
        }
        Ok(SipMessage::Response(r)) => {
            exercise_headers(&r.headers);
            let _ = check_response(&r);
            let _ = r.to_bytes();
        }
        Err(e) => {
            if let (ParseError::BadBody { reason, .. }, Some(head)) = (&e, e.head_request()) {
                let _ = build_error_response(head, &Rejection::bad_framing(reason), "fuzz");
            }
            let _ = e.to_string();
        }
    }
}

/// Runs every typed accessor; whatever parses must print to text that
/// parses back to the same value.
fn exercise_headers(h: &sipline::sip::Headers) {
    if let Ok(vias) = h.vias() {
        for v in vias {
            let _ = (v.received_ip(), v.rport(), v.sent_by());
            assert_eq!(Via::parse(&v.to_string()).as_ref(), Ok(&v), "{v}");
        }
    }
    let _ = h.top_via();
    if let Ok(c) = h.cseq() {
        assert_eq!(CSeq::parse(&c.to_string()), Ok(c));
    }
    let _ = h.call_id();
    let _ = h.max_forwards();
    let _ = h.content_type();
    let _ = h.list("Accept");
    let _ = h.single("Call-ID");
    let mut addrs: Vec<NameAddr> = Vec::new();
    addrs.extend(h.from_addr());
    addrs.extend(h.to_addr());
    for name in ["Contact", "Route", "Record-Route"] {
        addrs.extend(h.name_addrs(name).unwrap_or_default());
    }
    for na in addrs {
        if let Some(s) = na.uri.as_sip() {
            let _ = (s.user_unescaped(), s.header_pairs());
        }
        let text = na.to_string();
        assert_eq!(NameAddr::parse(&text).as_ref(), Ok(&na), "{text}");
    }
}

const INTERESTING: &[u8] = b" \t\r\n:;,=<>\"\\%@[]?&/\x00\x7f\xff0123456789";

#[test]
fn mutated_torture_messages_never_panic() {
    let corpus = all_torture_messages();
    assert!(corpus.len() >= 60);
    for d in &corpus {
        exercise(d);
    }
    // Deterministic by default; SIP_FUZZ_SEED explores other seeds.
    let seed = std::env::var("SIP_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4475_5118);
    let mut rng = StdRng::seed_from_u64(seed);
    for _ in 0..20_000 {
        let mut d = corpus[rng.random_range(0..corpus.len())].clone();
        for _ in 0..rng.random_range(1..6) {
            if d.is_empty() {
                break;
            }
            let i = rng.random_range(0..d.len());
            match rng.random_range(0..6) {
                0 => d.truncate(i),
                1 => d[i] = INTERESTING[rng.random_range(0..INTERESTING.len())],
                2 => d.insert(i, INTERESTING[rng.random_range(0..INTERESTING.len())]),
                3 => {
                    d.remove(i);
                }
                4 => d[i] = rng.random(),
                _ => {
                    // Duplicate a slice (repeated headers, long values).
                    let end = (i + rng.random_range(1..64)).min(d.len());
                    let piece = d[i..end].to_vec();
                    d.splice(i..i, piece);
                }
            }
        }
        exercise(&d);
    }
}
