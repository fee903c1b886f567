//! `sipline loopback` as a measuring instrument: delay, loss, jitter and
//! MOS as reported, with the emulated network between its two user agents.

#[path = "support/proc.rs"]
mod proc;

use std::time::Duration;

use proc::Sipline;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);
const DIRECTIONS: [&str; 2] = ["caller_to_callee", "callee_to_caller"];

/// One loopback at a time: each runs two real-time user agents, and
/// several at once on a 2-core machine make the measurement (not the
/// product) late.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `sipline --json loopback --null-audio <args>`; returns its exit
/// code and the `loopback_report` event.
fn loopback(args: &[&str]) -> (i32, Value) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut all = vec!["loopback", "--null-audio"];
    all.extend_from_slice(args);
    let duration = args
        .iter()
        .position(|a| *a == "--duration")
        .and_then(|i| args.get(i + 1)?.parse::<u64>().ok())
        .unwrap_or(0);
    let mut p = Sipline::spawn("loopback", &all, &[]);
    let (code, events) = p.wait_exit(WAIT + Duration::from_secs(duration));
    let report = events
        .iter()
        .find(|e| e["event"] == "loopback_report")
        .cloned()
        .unwrap_or_else(|| panic!("no loopback_report: {events:?}\n{}", p.stderr()));
    (code, report)
}

fn num(v: &Value, field: &str) -> f64 {
    v[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} is not a number in {v}"))
}

#[test]
fn pcmu_without_impairment_has_mouth_to_ear_delay_under_80_ms_and_mos_above_4_1() {
    let (code, r) = loopback(&["--codec", "pcmu", "--seed", "1"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["codec"], "PCMU");
    assert_eq!(r["pass"], true, "{r}");
    for dir in DIRECTIONS {
        let d = &r[dir];
        let delay = num(d, "delay_ms");
        // The jitter buffer at its lower bound plus the tick phase between
        // the two user agents.
        assert!((10.0..80.0).contains(&delay), "{dir} delay {delay}: {d}");
        // Without a network delay, the delay measured over the last second
        // is the buffer's own at the end.
        let buffer = num(d, "jitter_buffer_ms");
        let end = num(d, "delay_end_ms");
        assert!(
            (end - buffer).abs() < 10.0,
            "{dir}: measured {end} at the end, buffer {buffer}"
        );
        assert!(num(d, "mos") > 4.1, "{dir}: {d}");
        assert_eq!(num(d, "packets_lost"), 0.0, "{dir}: {d}");
        assert_eq!(num(d, "network_dropped"), 0.0, "{dir}: {d}");
        assert!(num(d, "packets_sent") >= 140.0, "{dir}: {d}");
        assert!(num(d, "match_score") > 0.95, "{dir}: {d}");
        let level = num(d, "sent_dbfs") - num(d, "received_dbfs");
        assert!(level.abs() < 0.5, "{dir}: G.711 keeps the level: {d}");
    }
    assert!(num(&r, "mos") > 4.1);
}

#[test]
fn opus_without_impairment_has_delay_under_80_ms_and_mos_above_4_0() {
    let (code, r) = loopback(&["--codec", "opus", "--seed", "1"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["codec"], "opus");
    for dir in DIRECTIONS {
        let d = &r[dir];
        let delay = num(d, "delay_ms");
        assert!((10.0..80.0).contains(&delay), "{dir} delay {delay}: {d}");
        assert!(num(d, "mos") > 4.0, "{dir}: {d}");
        assert!(num(d, "match_score") > 0.9, "{dir}: {d}");
        assert_eq!(num(d, "packets_lost"), 0.0, "{dir}: {d}");
    }
}

#[test]
fn opus_with_5_percent_loss_recovers_frames_by_fec_and_keeps_mos_above_3_5() {
    let (code, r) = loopback(&[
        "--codec",
        "opus",
        "--loss",
        "5",
        "--duration",
        "6",
        "--seed",
        "7",
    ]);
    assert_eq!(code, 0, "{r}");
    let mut recovered = 0.0;
    for dir in DIRECTIONS {
        let d = &r[dir];
        assert!(num(d, "mos") > 3.5, "{dir}: {d}");
        assert!(num(d, "packets_lost") > 0.0, "{dir}: {d}");
        // FEC makes the effective loss lower than the network's.
        assert!(
            num(d, "effective_loss_percent") <= num(d, "loss_percent"),
            "{dir}: {d}"
        );
        recovered += num(d, "fec_recovered");
    }
    assert!(recovered > 0.0, "in-band FEC recovered frames: {r}");
}

#[test]
fn jitter_40_reorder_5_loses_no_frame_to_late_arrival_and_buffers_under_120_ms() {
    let (code, r) = loopback(&[
        "--jitter",
        "40",
        "--reorder",
        "5",
        "--duration",
        "10",
        "--seed",
        "3",
    ]);
    assert_eq!(code, 0, "{r}");
    let mut reordered = 0.0;
    for dir in DIRECTIONS {
        let d = &r[dir];
        // Once the buffer has adapted (the report's early look, 5 s in),
        // no packet arrives too late; before, a few may.
        assert_eq!(num(d, "early_at_s"), 5.0, "{dir}: {d}");
        let late_after = num(d, "late_packets") - num(d, "late_packets_early");
        assert_eq!(late_after, 0.0, "{dir}: late after adapting: {d}");
        assert!(num(d, "late_packets") <= 5.0, "{dir}: {d}");
        assert_eq!(num(d, "packets_lost"), 0.0, "{dir}: {d}");
        let buffer = num(d, "jitter_buffer_ms");
        assert!(buffer > 0.0 && buffer < 120.0, "{dir} buffer {buffer}: {d}");
        let playout = num(d, "playout_delay_ms");
        assert!(
            playout > 0.0 && playout < 120.0,
            "{dir} playout {playout}: {d}"
        );
        assert!(num(d, "network_max_delay_ms") > 30.0, "{dir}: {d}");
        assert!(num(d, "jitter_ms") > 1.0, "{dir}: {d}");
        reordered += num(d, "network_reordered");
    }
    assert!(reordered > 0.0, "5 % of 1000 packets reordered: {r}");
}

#[test]
fn loss_5_percent_is_reported_as_about_5_percent_and_concealed() {
    let (code, r) = loopback(&["--loss", "5", "--duration", "6", "--seed", "7"]);
    assert_eq!(code, 0, "{r}");
    let (mut lost, mut expected) = (0.0, 0.0);
    for dir in DIRECTIONS {
        let d = &r[dir];
        let l = num(d, "packets_lost");
        let pct = num(d, "loss_percent");
        assert!((1.0..10.0).contains(&pct), "{dir} loss {pct} %: {d}");
        assert!(
            num(d, "concealed_frames") >= l,
            "{dir}: every loss concealed: {d}"
        );
        // The receiver counts what the network dropped, except a loss at
        // the very end (no later packet shows the gap).
        let dropped = num(d, "network_dropped");
        assert!(l <= dropped && l + 2.0 >= dropped, "{dir}: {d}");
        lost += l;
        expected += l * 100.0 / pct;
        assert!(num(d, "mos") < 4.2, "loss lowers the MOS: {d}");
    }
    let overall = 100.0 * lost / expected;
    assert!(
        (3.0..7.0).contains(&overall),
        "overall loss {overall} %: {r}"
    );
}

#[test]
fn min_mos_above_what_g711_can_reach_exits_8() {
    let (code, r) = loopback(&["--min-mos", "4.9", "--seed", "1"]);
    assert_eq!(code, 8, "{r}");
    assert_eq!(r["pass"], false);
    assert_eq!(num(&r, "min_mos"), 4.9);
    let failures = r["failures"].to_string();
    assert!(failures.contains("below --min-mos 4.9"), "{failures}");
    // The same call with a reachable threshold passes.
    let (code, r) = loopback(&["--min-mos", "4.0", "--seed", "1"]);
    assert_eq!(code, 0, "{r}");
}

/// Issue requirement: a 2-minute loopback with ±0.1 % clock drift ends
/// with the same jitter-buffer delay (within 20 ms) as after 10 s. One run
/// covers both signs: the caller's clock runs 0.1 % fast, so the callee
/// hears a fast sender and the caller a slow one. The buffer's target
/// follows the jitter it measures, which scheduling on a busy machine
/// raises now and then; drift must not add delay beyond what the buffer
/// aims at, so the comparison is of the delay above the target.
#[test]
fn two_minutes_of_0_1_percent_drift_keep_the_buffer_delay_of_the_first_10_s() {
    let (code, r) = loopback(&["--drift", "0.1", "--duration", "120", "--seed", "7"]);
    assert_eq!(code, 0, "{r}");
    for dir in DIRECTIONS {
        let d = &r[dir];
        assert_eq!(num(d, "early_at_s"), 10.0, "{dir}: {d}");
        let early = num(d, "jitter_buffer_early_ms") - num(d, "jitter_target_early_ms");
        let end = num(d, "jitter_buffer_ms") - num(d, "jitter_target_ms");
        assert!(
            (end - early).abs() <= 20.0,
            "{dir}: {early:.1} ms above the target at 10 s, {end:.1} ms at the end: {d}"
        );
        // The buffer absorbed the drift by adapting, without losing frames
        // to lateness or concealing more than a handful.
        assert!(
            num(d, "jitter_grown") + num(d, "jitter_shrunk") > 0.0,
            "{dir}: {d}"
        );
        assert_eq!(num(d, "late_packets"), 0.0, "{dir}: {d}");
        assert!(num(d, "concealed_frames") <= 5.0, "{dir}: {d}");
        assert!(num(d, "mos") > 4.1, "{dir}: {d}");
    }
}

#[test]
fn burst_loss_and_drift_are_applied_and_reported() {
    let (code, r) = loopback(&[
        "--loss",
        "10",
        "--loss-burst",
        "4",
        "--drift",
        "0.5",
        "--duration",
        "4",
        "--seed",
        "5",
    ]);
    assert!(code == 0 || code == 8, "{r}");
    let net = &r["network"];
    assert_eq!(num(net, "loss_burst"), 4.0);
    assert_eq!(num(net, "drift_percent"), 0.5);
    assert_eq!(num(net, "seed"), 5.0);
    let forward = &r["caller_to_callee"];
    let backward = &r["callee_to_caller"];
    // The caller's clock runs fast: its packets start with a head start of
    // 0.5 % of (4 s + 10 s) ≈ 70 ms that shrinks; the callee's packets fall
    // behind by 0.5 % of the call.
    let head = num(forward, "network_max_delay_ms");
    assert!((60.0..80.0).contains(&head), "{forward}");
    let behind = num(backward, "network_max_delay_ms");
    assert!((10.0..30.0).contains(&behind), "{backward}");
    assert!(num(forward, "network_dropped") + num(backward, "network_dropped") > 0.0);
}

#[test]
fn impairment_options_out_of_range_are_usage_errors() {
    for args in [
        &["loopback", "--loss", "150"][..],
        &["loopback", "--loss", "-1"],
        &["loopback", "--jitter", "abc"],
        &["loopback", "--delay", "5000"],
        &["loopback", "--reorder", "101"],
        &["loopback", "--drift", "5"],
        &["loopback", "--loss-burst", "0.5"],
        &["loopback", "--min-mos", "7"],
        &["loopback", "--duration", "1"],
    ] {
        let mut p = Sipline::spawn("loopback", args, &[]);
        assert_eq!(p.wait_exit(WAIT).0, 2, "{args:?}");
    }
}

#[test]
fn human_report_names_every_measurement() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipline"))
        .args(["loopback", "--null-audio", "--duration", "2", "--seed", "2"])
        .env("XDG_CONFIG_HOME", "/nonexistent/sipline-test-config")
        .output()
        .expect("sipline runs");
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "loopback report (PCMU",
        "network: perfect",
        "mouth-to-ear delay",
        "playout delay",
        "packets             sent",
        "concealed frames",
        "jitter (RFC 3550)",
        "MOS (E-model)",
        "result: PASS",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    assert_eq!(out.status.code(), Some(0), "{text}");
}

/// With every packet lost, the report says so (RFC 3550's count between
/// received packets has nothing to count) and the check fails.
#[test]
fn total_loss_is_reported_as_100_percent() {
    let (code, r) = loopback(&["--loss", "100", "--duration", "2", "--seed", "4"]);
    assert_eq!(code, 8, "{r}");
    for dir in DIRECTIONS {
        let d = &r[dir];
        assert_eq!(num(d, "packets_received"), 0.0, "{dir}: {d}");
        assert_eq!(num(d, "loss_percent"), 100.0, "{dir}: {d}");
        assert_eq!(num(d, "packets_lost"), num(d, "packets_sent"), "{dir}: {d}");
        assert_eq!(d["signal_ok"], false, "{dir}: {d}");
    }
}
