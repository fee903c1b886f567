//! The interactive phone's call features through `Phone`, with real UDP
//! sockets on 127.0.0.1: hold and resume (RFC 3264 §8.4) with the media
//! stopping and restarting, mute, blind transfer between three phones
//! (RFC 3515, RFC 5589), and call waiting with per-call audio.
//!
//! Each phone's audio source is a tone and its sink counts the frames it
//! is given and how many of them are loud, so the tests see what each call
//! plays and sends.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sipline::media::audio::{AudioError, AudioSink, AudioSource};
use sipline::media::codec::CodecKind;
use sipline::media::signal::{ToneGenerator, rms_dbfs};
use sipline::sdp::Direction;
use sipline::transaction::TimerConfig;
use sipline::ua::driver::CallInfo;
use sipline::ua::{
    CallHandle, MediaIo, Phone, PhoneConfig, PhoneEvent, TransferProgress, UaConfig, UaEvent,
};
use tokio::sync::mpsc::UnboundedReceiver;

const LIMIT: Duration = Duration::from_secs(10);

/// Frames written to a sink, and how many were louder than -40 dBFS.
#[derive(Clone, Default)]
struct Counts {
    frames: Arc<AtomicUsize>,
    loud: Arc<AtomicUsize>,
}

impl Counts {
    fn frames(&self) -> usize {
        self.frames.load(Ordering::SeqCst)
    }
    fn loud(&self) -> usize {
        self.loud.load(Ordering::SeqCst)
    }
}

struct CountingSink(Counts);

impl AudioSink for CountingSink {
    fn write_frame(&mut self, pcm: &[i16]) -> Result<(), AudioError> {
        self.0.frames.fetch_add(1, Ordering::SeqCst);
        if rms_dbfs(pcm) > -40.0 {
            self.0.loud.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
    fn finish(&mut self) -> Result<(), AudioError> {
        Ok(())
    }
}

struct Tone(ToneGenerator);

impl AudioSource for Tone {
    fn read_frame(&mut self, out: &mut [i16]) {
        self.0.fill(out);
    }
}

/// A tone source and a counting sink.
fn io(freq: f64) -> (MediaIo, Counts) {
    let counts = Counts::default();
    (
        MediaIo {
            source: Box::new(Tone(ToneGenerator::new(freq, 0.3, 8000))),
            sink: Box::new(CountingSink(counts.clone())),
        },
        counts,
    )
}

/// A phone and the events it reported so far.
struct TestPhone {
    phone: Phone,
    rx: UnboundedReceiver<PhoneEvent>,
    seen: Vec<PhoneEvent>,
}

impl TestPhone {
    async fn start(user: &str, seed: u64) -> TestPhone {
        let cfg = PhoneConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            ua: UaConfig {
                user: user.into(),
                from: None,
                display_name: None,
                local_port: 0,
                timers: TimerConfig::default(),
                user_agent: "sipline-test".into(),
                seed,
                route: Vec::new(),
            },
            codecs: vec![CodecKind::Pcmu],
            rtp_timeout: None,
            media_keepalive: None,
            jitter_buffer: Default::default(),
            opus: Default::default(),
            rtcp: Default::default(),
        };
        let (phone, rx) = Phone::start(cfg).await.expect("phone starts");
        TestPhone {
            phone,
            rx,
            seen: Vec::new(),
        }
    }

    fn uri(&self, user: &str) -> String {
        format!("sip:{user}@{}", self.phone.local_addr())
    }

    /// Waits for an event matching `f` (also among those already seen,
    /// which it consumes).
    async fn until<T>(&mut self, what: &str, f: impl Fn(&PhoneEvent) -> Option<T>) -> T {
        if let Some(i) = self.seen.iter().position(|e| f(e).is_some()) {
            let e = self.seen.remove(i);
            return f(&e).expect("matched above");
        }
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            let e = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("no {what} within {LIMIT:?}; seen {:?}", self.seen))
                .expect("phone running");
            if let Some(t) = f(&e) {
                return t;
            }
            self.seen.push(e);
        }
    }

    async fn incoming(&mut self) -> CallHandle {
        self.until("incoming call", |e| match e {
            PhoneEvent::Ua(UaEvent::IncomingCall { call, .. }) => Some(*call),
            _ => None,
        })
        .await
    }

    async fn ua_event(&mut self, what: &str, wanted: UaEvent) {
        self.until(what, |e| match e {
            PhoneEvent::Ua(u) if *u == wanted => Some(()),
            _ => None,
        })
        .await
    }

    async fn answered(&mut self, call: CallHandle) {
        self.ua_event("answer", UaEvent::Answered { call }).await
    }

    async fn ended(&mut self, call: CallHandle) {
        self.until("end of call", |e| match e {
            PhoneEvent::CallEnded { call: c, .. } if *c == call => Some(()),
            _ => None,
        })
        .await
    }

    async fn info(&self, call: CallHandle) -> CallInfo {
        self.phone
            .calls()
            .await
            .into_iter()
            .find(|c| c.call == call)
            .expect("call listed")
    }

    async fn packets_received(&self, call: CallHandle) -> u64 {
        self.phone
            .stats(call)
            .await
            .expect("stats")
            .packets_received
    }

    async fn packets_sent(&self, call: CallHandle) -> u64 {
        self.phone.stats(call).await.expect("stats").packets_sent
    }
}

/// Waits until `f` holds (polled every 20 ms).
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + LIMIT;
    while !f() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn pause(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// A calls B, B answers: (A's call, B's call, A's sink, B's sink).
async fn call(a: &mut TestPhone, b: &mut TestPhone) -> (CallHandle, CallHandle, Counts, Counts) {
    let (io_a, sink_a) = io(440.0);
    let call = a.phone.dial(&b.uri("bob"), io_a).await.expect("dial");
    let incoming = b.incoming().await;
    let (io_b, sink_b) = io(660.0);
    b.phone.answer(incoming, io_b).await.expect("answer");
    a.answered(call).await;
    b.answered(incoming).await;
    let (sa, sb) = (sink_a.clone(), sink_b.clone());
    eventually("tone heard both ways", || sa.loud() > 5 && sb.loud() > 5).await;
    (call, incoming, sink_a, sink_b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_stops_the_media_both_ways_and_resume_restarts_it_rfc3264_8_4() {
    let mut a = TestPhone::start("alice", 11).await;
    let mut b = TestPhone::start("bob", 12).await;
    let (call, incoming, sink_a, sink_b) = call(&mut a, &mut b).await;

    a.phone.hold(call).await.expect("hold");
    a.ua_event("held", UaEvent::Held { call }).await;
    b.ua_event("remote hold", UaEvent::RemoteHold { call: incoming })
        .await;
    let info_a = a.info(call).await;
    assert!(info_a.hold.local && !info_a.hold.remote);
    assert_eq!(info_a.media_direction, Some(Direction::SendOnly));
    assert_eq!(info_a.codec, Some(CodecKind::Pcmu));
    let info_b = b.info(incoming).await;
    assert!(info_b.hold.remote && !info_b.hold.local);
    assert_eq!(info_b.media_direction, Some(Direction::RecvOnly));
    // Let packets in flight arrive, then nothing moves either way.
    pause(300).await;
    let (rx_b, rx_a) = (
        b.packets_received(incoming).await,
        a.packets_received(call).await,
    );
    let (frames_a, loud_b) = (sink_a.frames(), sink_b.loud());
    pause(400).await;
    assert_eq!(b.packets_received(incoming).await, rx_b, "A sends nothing");
    assert_eq!(a.packets_received(call).await, rx_a, "B sends nothing");
    assert_eq!(sink_a.frames(), frames_a, "A's held call plays nothing");
    assert_eq!(sink_b.loud(), loud_b, "B hears no tone");
    // A second hold is refused.
    assert!(a.phone.hold(call).await.is_err());

    a.phone.resume(call).await.expect("resume");
    a.ua_event("resumed", UaEvent::Resumed { call }).await;
    b.ua_event("remote resume", UaEvent::RemoteResume { call: incoming })
        .await;
    assert_eq!(
        a.info(call).await.media_direction,
        Some(Direction::SendRecv)
    );
    let (sa, sb) = (sink_a.clone(), sink_b.clone());
    eventually("tone again both ways", || {
        sa.loud() > frames_a + 5 && sb.loud() > loud_b + 5
    })
    .await;

    // Mute: the stream goes on, but carries silence.
    a.phone.mute(call, true).await.expect("mute");
    assert!(a.info(call).await.muted);
    pause(300).await;
    let (sent, loud_b) = (a.packets_sent(call).await, sink_b.loud());
    pause(300).await;
    assert!(a.packets_sent(call).await > sent + 5, "RTP keeps flowing");
    assert_eq!(sink_b.loud(), loud_b, "but silent");
    a.phone.mute(call, false).await.expect("unmute");
    let sb = sink_b.clone();
    eventually("tone after unmute", || sb.loud() > loud_b + 5).await;

    a.phone.hangup(call);
    a.ended(call).await;
    b.ended(incoming).await;
    a.phone.shutdown().await;
    b.phone.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blind_transfer_between_three_phones_rfc3515_rfc5589() {
    let mut a = TestPhone::start("alice", 21).await;
    let mut b = TestPhone::start("bob", 22).await;
    let mut c = TestPhone::start("carol", 23).await;
    let (call, incoming, _sink_a, _sink_b) = call(&mut a, &mut b).await;

    // B transfers A to C.
    b.phone
        .transfer(incoming, &c.uri("carol"))
        .await
        .expect("REFER sent");
    b.ua_event(
        "202",
        UaEvent::Transfer {
            call: incoming,
            progress: TransferProgress::Accepted,
        },
    )
    .await;
    let target = a
        .until("transfer request", |e| match e {
            PhoneEvent::Ua(UaEvent::TransferRequested {
                call: c, target, ..
            }) if *c == call => Some(target.clone()),
            _ => None,
        })
        .await;
    assert_eq!(target, c.uri("carol"));
    let new_call = a
        .until("referred call", |e| match e {
            PhoneEvent::Ua(UaEvent::ReferredCall {
                call: n, original, ..
            }) if *original == call => Some(*n),
            _ => None,
        })
        .await;
    // C receives the INVITE from A.
    let (at_c, from) = c
        .until("incoming call", |e| match e {
            PhoneEvent::Ua(UaEvent::IncomingCall { call, from, .. }) => Some((*call, from.clone())),
            _ => None,
        })
        .await;
    assert!(from.contains("sip:alice@"), "{from}");
    let (io_c, sink_c) = io(880.0);
    c.phone.answer(at_c, io_c).await.expect("C answers");
    a.answered(new_call).await;
    b.until("transfer success", |e| match e {
        PhoneEvent::Ua(UaEvent::Transfer {
            progress: TransferProgress::Succeeded { status: 200, .. },
            ..
        }) => Some(()),
        _ => None,
    })
    .await;
    // The original call ends on both sides; A now talks to C with the
    // audio it had with B.
    a.ended(call).await;
    b.ended(incoming).await;
    let sc = sink_c.clone();
    eventually("C hears A's tone", || sc.loud() > 5).await;
    let calls = a.phone.calls().await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(calls[0].peer.contains("carol"), "{calls:?}");
    a.phone.hangup(new_call);
    a.ended(new_call).await;
    c.ended(at_c).await;
    for p in [a, b, c] {
        p.phone.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_waiting_answer_the_second_call_holding_the_first_then_switch_back() {
    let mut a = TestPhone::start("alice", 31).await;
    let mut b = TestPhone::start("bob", 32).await;
    let mut c = TestPhone::start("carol", 33).await;
    let (call_a, b1, _sink_a, sink_b1) = call(&mut a, &mut b).await;

    // C calls B while B talks to A: it rings.
    let (io_c, _sink_c) = io(880.0);
    let call_c = c.phone.dial(&b.uri("bob"), io_c).await.expect("dial");
    let b2 = b.incoming().await;
    let listed = b.phone.calls().await;
    assert_eq!(listed.len(), 2);
    // Answer it: the first call goes on hold.
    let (io_b2, sink_b2) = io(550.0);
    b.phone.answer_waiting(b2, io_b2).await.expect("answer");
    b.ua_event("first call held", UaEvent::Held { call: b1 })
        .await;
    a.ua_event("remote hold", UaEvent::RemoteHold { call: call_a })
        .await;
    c.answered(call_c).await;
    let s2 = sink_b2.clone();
    eventually("B hears C", || s2.loud() > 5).await;
    // The held call does not play to its sink.
    pause(300).await;
    let frames_b1 = sink_b1.frames();
    pause(300).await;
    assert_eq!(sink_b1.frames(), frames_b1, "held call plays nothing");
    let calls = b.phone.calls().await;
    let first = calls.iter().find(|i| i.call == b1).unwrap();
    let second = calls.iter().find(|i| i.call == b2).unwrap();
    assert!(first.hold.local && !second.hold.local);

    // Switch back: C's call is held, A's resumed.
    b.phone.switch(b1).await.expect("switch");
    b.ua_event("second call held", UaEvent::Held { call: b2 })
        .await;
    b.ua_event("first call resumed", UaEvent::Resumed { call: b1 })
        .await;
    let s1 = sink_b1.clone();
    eventually("B hears A again", || s1.loud() > frames_b1 + 5).await;
    pause(300).await;
    let frames_b2 = sink_b2.frames();
    pause(300).await;
    assert_eq!(sink_b2.frames(), frames_b2, "now the second is silent");

    b.phone.hangup(b1);
    b.phone.hangup(b2);
    b.ended(b1).await;
    b.ended(b2).await;
    a.ended(call_a).await;
    c.ended(call_c).await;
    for p in [a, b, c] {
        p.phone.shutdown().await;
    }
}

// ----- against SIPp (Debian package `sip-tester`) ----------------------

/// A SIPp UAS running one scenario from `tests/data/sipp/` on 127.0.0.1.
struct Sipp {
    child: std::process::Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Sipp {
    fn start_uas(scenario: &str, extra: &[&str]) -> Sipp {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/sipp")
            .join(scenario);
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("a free UDP port")
            .port();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cmd = std::process::Command::new("sipp");
        cmd.arg("-sf")
            .arg(&path)
            .args(extra)
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-m", "1", "-nostdin", "-timeout", "20s", "-timeout_error"])
            .args(["-trace_msg", "-message_file"])
            .arg(dir.path().join("messages.log"))
            .args(["-trace_err", "-error_file"])
            .arg(dir.path().join("errors.log"))
            .current_dir(dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let child = cmd
            .spawn()
            .expect("run sipp (Debian/Ubuntu package sip-tester)");
        let mut sipp = Sipp { child, dir, port };
        let wanted = format!("0100007F:{port:04X}");
        let deadline = std::time::Instant::now() + LIMIT;
        while !std::fs::read_to_string("/proc/net/udp")
            .unwrap_or_default()
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(wanted.as_str()))
        {
            if let Ok(Some(status)) = sipp.child.try_wait() {
                panic!("sipp exited early ({status})\n{}", sipp.logs());
            }
            assert!(std::time::Instant::now() < deadline, "sipp did not bind");
            std::thread::sleep(Duration::from_millis(20));
        }
        sipp
    }

    fn uri(&self) -> String {
        format!("sip:service@127.0.0.1:{}", self.port)
    }

    fn logs(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        format!(
            "--- sipp messages\n{}\n--- sipp errors\n{}",
            read("messages.log"),
            read("errors.log")
        )
    }

    /// Waits for SIPp's exit status (0: every message as its scenario
    /// expects).
    async fn exit_code(&mut self) -> i32 {
        let deadline = std::time::Instant::now() + LIMIT * 2;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for sipp") {
                return status.code().unwrap_or(-1);
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("sipp did not finish\n{}", self.logs());
            }
            pause(20).await;
        }
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_sees_sendonly_then_sendrecv_re_invites_with_growing_o_versions_rfc3264_8_4() {
    let mut sipp = Sipp::start_uas("uas_hold.xml", &[]);
    let mut a = TestPhone::start("alice", 41).await;
    let (io_a, _) = io(440.0);
    let call = a.phone.dial(&sipp.uri(), io_a).await.expect("dial");
    a.answered(call).await;
    a.phone.hold(call).await.expect("hold");
    a.ua_event("held", UaEvent::Held { call }).await;
    assert_eq!(
        a.info(call).await.media_direction,
        Some(Direction::SendOnly)
    );
    a.phone.resume(call).await.expect("resume");
    a.ua_event("resumed", UaEvent::Resumed { call }).await;
    a.phone.hangup(call);
    a.ended(call).await;
    let code = sipp.exit_code().await;
    assert_eq!(code, 0, "{}", sipp.logs());
    a.phone.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_transfers_us_we_call_the_target_and_notify_it_rfc3515() {
    let mut c = TestPhone::start("carol", 51).await;
    let target = c.uri("carol");
    let mut sipp = Sipp::start_uas("uas_refer.xml", &["-key", "target", &target]);
    let mut a = TestPhone::start("alice", 52).await;
    let (io_a, _) = io(440.0);
    let call = a.phone.dial(&sipp.uri(), io_a).await.expect("dial");
    a.answered(call).await;
    let requested = a
        .until("transfer request", |e| match e {
            PhoneEvent::Ua(UaEvent::TransferRequested {
                call: c, target, ..
            }) if *c == call => Some(target.clone()),
            _ => None,
        })
        .await;
    assert_eq!(requested, target);
    // C receives the INVITE from A and answers.
    let at_c = c.incoming().await;
    let (io_c, sink_c) = io(880.0);
    c.phone.answer(at_c, io_c).await.expect("C answers");
    a.ended(call).await;
    let code = sipp.exit_code().await;
    assert_eq!(code, 0, "{}", sipp.logs());
    let sc = sink_c.clone();
    eventually("C hears A", || sc.loud() > 5).await;
    c.phone.hangup(at_c);
    c.ended(at_c).await;
    a.phone.shutdown().await;
    c.phone.shutdown().await;
}
