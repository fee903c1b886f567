//! Media benchmarks: per 20 ms frame, for each codec in [`CODECS`].
//!
//! - `codec/<name>`: encode one frame and decode it again;
//! - `media_path/<name>`: the whole per-call path of one frame —
//!   `MediaSession::push_capture` → `poll_transmit` → `handle_datagram` on a
//!   second session → `pull_playback_into`;
//! - `jitter_buffer/5pct_loss`: one `push` (skipped for the 5 % of packets
//!   a seeded RNG drops) and one `pop` per frame.
//!
//! Run with `cargo bench --bench media`; see docs/benchmarks.md.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sipline::media::codec::CodecKind;
use sipline::media::jitter::{JitterBuffer, JitterConfig};
use sipline::media::rtp::RtpPacket;
use sipline::media::session::{MediaConfig, MediaSession};
use sipline::media::signal::ChirpSequence;

/// The codecs benchmarked: adding a codec is one line here.
const CODECS: &[CodecKind] = &[CodecKind::Pcmu, CodecKind::Pcma, CodecKind::Opus];

const FRAME: Duration = Duration::from_millis(20);

/// One second of the loopback test signal at the codec's rate, cut into
/// frames that the benchmarks cycle through.
fn frames(codec: CodecKind) -> Vec<Vec<i16>> {
    let n = MediaConfig::new(codec, None).frame_samples();
    let mut signal = vec![0; codec.clock_rate() as usize];
    ChirpSequence::new(1, 0.5, codec.clock_rate()).fill(&mut signal);
    signal.chunks_exact(n).map(<[i16]>::to_vec).collect()
}

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));
    for &codec in CODECS {
        let input = frames(codec);
        let mut encoder = codec.new_encoder();
        let mut decoder = codec.new_decoder();
        let mut payload = Vec::new();
        let mut pcm = Vec::new();
        let mut i = 0;
        group.bench_function(
            BenchmarkId::new("encode+decode", codec.encoding_name()),
            |b| {
                b.iter(|| {
                    payload.clear();
                    pcm.clear();
                    encoder.encode(black_box(&input[i % input.len()]), &mut payload);
                    decoder.decode(black_box(&payload), &mut pcm);
                    i += 1;
                    black_box(pcm.len())
                })
            },
        );
    }
    group.finish();
}

fn media_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("media_path");
    group.throughput(Throughput::Elements(1));
    let a_addr = SocketAddr::from(([127, 0, 0, 1], 40000));
    let b_addr = SocketAddr::from(([127, 0, 0, 1], 40002));
    for &codec in CODECS {
        let input = frames(codec);
        let mut now = Instant::now();
        let mut rng = StdRng::seed_from_u64(1);
        let mut a = MediaSession::new(MediaConfig::new(codec, Some(b_addr)), &mut rng, now);
        let mut b = MediaSession::new(MediaConfig::new(codec, Some(a_addr)), &mut rng, now);
        let mut out = Vec::new();
        let mut i = 0;
        group.bench_function(BenchmarkId::new("frame", codec.encoding_name()), |bench| {
            bench.iter(|| {
                a.push_capture(black_box(&input[i % input.len()]));
                while let Some((_, datagram)) = a.poll_transmit() {
                    b.handle_datagram(&datagram, a_addr, now);
                }
                out.clear();
                b.pull_playback_into(now, &mut out);
                now += FRAME;
                i += 1;
                black_box(out.len())
            })
        });
        assert_eq!(b.stats().packets_lost, 0, "the path delivered every frame");
    }
    group.finish();
}

fn jitter_buffer(c: &mut Criterion) {
    let mut group = c.benchmark_group("jitter_buffer");
    group.throughput(Throughput::Elements(1));
    let mut jb = JitterBuffer::new(8000, 160, JitterConfig::default());
    let mut rng = StdRng::seed_from_u64(5);
    let payload = Bytes::from(vec![0xFF; 160]);
    let mut now = Instant::now();
    let mut seq: u16 = 0;
    let mut ts: u32 = 0;
    group.bench_function("5pct_loss", |b| {
        b.iter(|| {
            if !rng.random_bool(0.05) {
                let packet = RtpPacket {
                    marker: false,
                    payload_type: 0,
                    sequence_number: seq,
                    timestamp: ts,
                    ssrc: 0x1234_5678,
                    payload: payload.clone(),
                };
                jb.push(black_box(&packet), now);
            }
            seq = seq.wrapping_add(1);
            ts = ts.wrapping_add(160);
            let frame = jb.pop(now);
            now += FRAME;
            black_box(frame)
        })
    });
    group.finish();
}

criterion_group!(benches, codec, media_path, jitter_buffer);
criterion_main!(benches);
