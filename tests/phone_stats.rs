//! `Phone::stats`: a call's statistics on demand (for the interactive
//! phone), between two phones in one process on 127.0.0.1.

use std::time::Duration;

use sipline::media::audio::{NullSink, NullSource};
use sipline::media::codec::CodecKind;
use sipline::transaction::TimerConfig;
use sipline::ua::driver::RtcpOptions;
use sipline::ua::{CallHandle, MediaIo, Phone, PhoneConfig, PhoneEvent, UaConfig, UaEvent};
use tokio::sync::mpsc::UnboundedReceiver;

const LIMIT: Duration = Duration::from_secs(10);

fn config(user: &str, seed: u64) -> PhoneConfig {
    PhoneConfig {
        bind: "127.0.0.1:0".parse().expect("literal address"),
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
        rtcp: RtcpOptions {
            min_interval: Duration::from_millis(100),
            mux: true,
        },
    }
}

fn silence() -> MediaIo {
    MediaIo {
        source: Box::new(NullSource),
        sink: Box::new(NullSink),
    }
}

/// Waits for the first event `pick` accepts, answering incoming calls on
/// `answerer` meanwhile.
async fn wait_for<T>(
    events: &mut UnboundedReceiver<PhoneEvent>,
    answerer: Option<&Phone>,
    mut pick: impl FnMut(&PhoneEvent) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("event in time")
            .expect("phone running");
        if let (PhoneEvent::Ua(UaEvent::IncomingCall { call, .. }), Some(phone)) = (&ev, answerer) {
            phone.answer(*call, silence()).await.expect("answer");
        }
        if let Some(t) = pick(&ev) {
            return t;
        }
    }
}

#[tokio::test]
async fn stats_on_demand_show_the_call_so_far_with_rtcp_and_a_mos() {
    let (callee, mut callee_events) = Phone::start(config("callee", 1)).await.expect("start");
    let (caller, mut caller_events) = Phone::start(config("caller", 2)).await.expect("start");
    let target = format!("sip:callee@{}", callee.local_addr());
    let call = caller.dial(&target, silence()).await.expect("dial");
    assert!(
        caller.stats(call).await.is_none(),
        "no media before the answer"
    );

    let answering = wait_for(&mut callee_events, Some(&callee), |ev| match ev {
        PhoneEvent::Ua(UaEvent::Answered { call }) => Some(*call),
        _ => None,
    });
    let answered = wait_for(&mut caller_events, None, |ev| {
        matches!(ev, PhoneEvent::Ua(UaEvent::Answered { .. })).then_some(())
    });
    let (callee_call, ()) = tokio::join!(answering, answered);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (phone, call) in [(&caller, call), (&callee, callee_call)] {
        let stats = phone.stats(call).await.expect("media statistics");
        assert!(stats.packets_sent >= 50, "{stats:?}");
        assert!(stats.packets_received >= 50, "{stats:?}");
        assert!(stats.rtcp.reports_sent >= 3, "{stats:?}");
        assert!(stats.rtcp.reports_received >= 3, "{stats:?}");
        let rtt = stats.rtcp.rtt_ms.expect("an RTT after a few reports");
        assert!((0.0..10.0).contains(&rtt), "RTT {rtt}");
        let quality = stats.quality.expect("audio received, so a rating");
        assert!(quality.mos > 4.3, "{quality:?}");
    }
    let unknown: CallHandle = call + 1000;
    assert!(caller.stats(unknown).await.is_none());

    caller.hangup(call);
    let ended = wait_for(&mut caller_events, None, |ev| match ev {
        PhoneEvent::CallEnded { stats, .. } => Some(stats.clone()),
        _ => None,
    })
    .await
    .expect("final statistics");
    assert!(ended.rtcp.reports_sent >= 4, "{ended:?}");
    assert!(caller.stats(call).await.is_none(), "the call is gone");
    caller.shutdown().await;
    callee.shutdown().await;
}
