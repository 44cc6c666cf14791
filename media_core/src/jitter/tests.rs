use super::*;
use proptest::prelude::*;

const F: usize = 160;

fn buffer(min: f64, max: f64, initial: f64) -> JitterBuffer {
    let cfg = JitterConfig { min_delay_ms: min, max_delay_ms: max, initial_delay_ms: initial, ..Default::default() };
    JitterBuffer::new(cfg).unwrap()
}

/// A packet: (seq, timestamp, payload, arrival ms).
type Pkt = (u16, u32, Vec<i16>, f64);

/// Constant frames whose value names the packet (id + 1), sent every 20 ms.
fn stream(seq0: u16, ts0: u32, n: usize, delay: impl Fn(usize) -> f64) -> Vec<Pkt> {
    (0..n)
        .map(|i| {
            let seq = seq0.wrapping_add(i as u16);
            let ts = ts0.wrapping_add((i * F) as u32);
            (seq, ts, vec![i as i16 + 1; F], i as f64 * 20.0 + delay(i))
        })
        .collect()
}

/// Deliver packets in arrival order and pop every 20 ms (phase 5 ms) for `pops` frames.
fn run(jb: &mut JitterBuffer, mut pkts: Vec<Pkt>, pops: usize) -> (Vec<Frame>, Vec<PushOutcome>) {
    pkts.sort_by(|a, b| a.3.total_cmp(&b.3));
    let (mut frames, mut outcomes, mut it) = (Vec::new(), Vec::new(), pkts.into_iter().peekable());
    for k in 0..pops {
        let now = k as f64 * 20.0 + 5.0;
        while let Some((s, t, p, a)) = it.next_if(|p| p.3 <= now) {
            outcomes.push(jb.push(s, t, &p, a).unwrap());
        }
        frames.push(jb.pop(now).unwrap());
    }
    (frames, outcomes)
}

/// Ids of the normal frames (the last sample is never crossfaded).
fn played(frames: &[Frame]) -> Vec<i16> {
    frames.iter().filter(|f| f.kind == FrameKind::Normal).map(|f| f.pcm[F - 1]).collect()
}

fn strictly_increasing(ids: &[i16]) -> bool {
    ids.windows(2).all(|w| w[0] < w[1])
}

#[test]
fn fixed_delay_in_order_stream_is_bit_exact() {
    let mut jb = buffer(40.0, 40.0, 40.0);
    let (frames, outcomes) = run(&mut jb, stream(7, 1000, 100, |_| 3.0), 120);
    assert!(outcomes.iter().all(|&o| o == PushOutcome::Accepted));
    let normal: Vec<_> = frames.iter().filter(|f| f.kind == FrameKind::Normal).collect();
    assert_eq!(normal.len(), 100);
    for (i, f) in normal.iter().enumerate() {
        assert_eq!(f.pcm, vec![i as i16 + 1; F]);
    }
    let s = jb.stats();
    assert_eq!((s.packets_late, s.packets_lost, s.frames_dropped, s.frames_inserted), (0, 0, 0, 0));
    assert!(s.mean_delay_ms > 30.0 && s.mean_delay_ms < 60.0, "{s:?}");
}

#[test]
fn reordering_restores_order() {
    let mut jb = buffer(20.0, 200.0, 60.0);
    // Every odd packet overtakes the even one before it.
    let (frames, _) = run(&mut jb, stream(0, 0, 200, |i| if i % 2 == 0 { 25.0 } else { 2.0 }), 240);
    let ids = played(&frames);
    assert!(strictly_increasing(&ids), "{ids:?}");
    let s = jb.stats();
    assert_eq!(s.packets_late, 0);
    assert_eq!(s.packets_played + s.frames_dropped, 200);
}

#[test]
fn duplicates_are_ignored() {
    let mut jb = buffer(20.0, 200.0, 40.0);
    let mut pkts = stream(100, 0, 50, |_| 1.0);
    let copies: Vec<Pkt> = pkts.iter().map(|p| (p.0, p.1, p.2.clone(), p.3 + 30.0)).collect();
    pkts.extend(copies);
    let (frames, outcomes) = run(&mut jb, pkts, 80);
    assert_eq!(outcomes.iter().filter(|&&o| o == PushOutcome::Duplicate).count(), 50);
    assert!(strictly_increasing(&played(&frames)));
    assert_eq!(jb.stats().packets_duplicate, 50);
    assert_eq!(jb.stats().packets_late, 0);
}

#[test]
fn sequence_and_timestamp_wrap() {
    let mut jb = buffer(20.0, 200.0, 40.0);
    let ts0 = u32::MAX - 50 * F as u32 + 7;
    let (frames, outcomes) = run(&mut jb, stream(65_500, ts0, 200, |i| (i % 3) as f64), 230);
    assert!(outcomes.iter().all(|&o| o == PushOutcome::Accepted));
    let ids = played(&frames);
    assert!(strictly_increasing(&ids));
    let s = jb.stats();
    assert_eq!((s.resets, s.packets_late, s.packets_lost), (0, 0, 0));
    assert_eq!(s.packets_played + s.frames_dropped, 200);
}

#[test]
fn concealment_fades_to_exact_silence() {
    let mut jb = buffer(40.0, 40.0, 40.0);
    let tone = |i: usize| -> Vec<i16> {
        (0..F).map(|n| (8000.0 * (((i * F + n) as f64) * 2.0 * std::f64::consts::PI * 180.0 / 8000.0).sin()) as i16).collect()
    };
    let pkts: Vec<Pkt> = (0..20).map(|i| (i as u16, (i * F) as u32, tone(i), i as f64 * 20.0 + 1.0)).collect();
    let (frames, _) = run(&mut jb, pkts, 40);
    let first = frames.iter().position(|f| f.kind != FrameKind::Normal && f.pcm.iter().any(|&x| x != 0)).unwrap();
    assert_eq!(frames[first].kind, FrameKind::Concealed);
    // Continuity across the real -> concealed boundary: no step larger than the tone's own slope.
    let last_real = frames[first - 1].pcm[F - 1] as i32;
    assert!((frames[first].pcm[0] as i32 - last_real).abs() < 1500);
    // 60 ms = 3 frames into the loss every sample is exactly zero, and stays so.
    for f in &frames[first + 3..] {
        assert_eq!(f.kind, FrameKind::Silence);
        assert!(f.pcm.iter().all(|&x| x == 0));
    }
    let audible = jb.stats().concealed_samples;
    assert!(audible > 0 && audible <= 480, "{audible}");
}

#[test]
fn late_packet_is_reported_and_counted() {
    let mut jb = buffer(20.0, 200.0, 40.0);
    let pkts: Vec<Pkt> = stream(0, 0, 30, |_| 1.0).into_iter().filter(|p| p.0 != 5).collect();
    let (frames, _) = run(&mut jb, pkts, 40);
    assert!(!played(&frames).contains(&6));
    assert_eq!(jb.push(5, 5 * F as u32, &[6; F], 800.0).unwrap(), PushOutcome::Late);
    let s = jb.stats();
    assert_eq!((s.packets_late, s.packets_lost), (1, 0));
    assert_eq!(jb.push(5, 5 * F as u32, &[6; F], 801.0).unwrap(), PushOutcome::Duplicate);
}

#[test]
fn network_loss_is_counted() {
    let mut jb = buffer(20.0, 200.0, 40.0);
    let pkts: Vec<Pkt> = stream(0, 0, 100, |_| 1.0).into_iter().filter(|p| p.0 % 10 != 3).collect();
    run(&mut jb, pkts, 110);
    let s = jb.stats();
    assert_eq!((s.packets_lost, s.packets_late), (10, 0));
    assert!(s.frames_concealed > 0);
}

#[test]
fn far_jump_is_held_then_confirmed_as_restart() {
    let mut jb = buffer(20.0, 200.0, 40.0);
    run(&mut jb, stream(0, 0, 10, |_| 1.0), 10);
    assert_eq!(jb.push(30_000, 99, &[1; F], 300.0).unwrap(), PushOutcome::Held);
    assert_eq!(jb.push(30_001, 99 + F as u32, &[2; F], 320.0).unwrap(), PushOutcome::Reset);
    assert_eq!(jb.stats().resets, 1);
    let ids: Vec<i16> = (0..6).map(|k| jb.pop(330.0 + 20.0 * k as f64).unwrap()).map(|f| f.pcm[F - 1]).collect();
    assert!(ids.contains(&1) && ids.contains(&2), "{ids:?}");
}

#[test]
fn stray_packet_is_discarded() {
    let mut jb = buffer(20.0, 200.0, 40.0);
    run(&mut jb, stream(0, 0, 10, |_| 1.0), 10);
    assert_eq!(jb.push(40_000, 0, &[9; F], 200.0).unwrap(), PushOutcome::Held);
    assert_eq!(jb.push(10, 10 * F as u32, &[11; F], 201.0).unwrap(), PushOutcome::Accepted);
    let s = jb.stats();
    assert_eq!((s.packets_discarded, s.resets), (1, 0));
}

#[test]
fn target_grows_with_jitter_and_stays_in_bounds() {
    let mut jb = buffer(20.0, 150.0, 40.0);
    let delay = |i: usize| ((i * 7919) % 97) as f64; // 0..96 ms, deterministic
    run(&mut jb, stream(0, 0, 300, delay), 320);
    let t = jb.stats().target_delay_ms;
    assert!(t > 60.0 && t <= 150.0, "{t}");
    assert!(jb.stats().packets_late * 10 < 300, "{:?}", jb.stats());
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let mut jb = buffer(20.0, 200.0, 40.0);
    for len in [0, 1, F - 1, F + 1] {
        assert_eq!(jb.push(0, 0, &vec![0; len], 0.0), Err(MediaError::WrongFrameSize(len, F)));
    }
    assert!(jb.push(0, 0, &[0; F], f64::NAN).is_err());
    assert!(jb.pop(f64::INFINITY).is_err());
    assert_eq!(jb.stats().packets_received, 0);
    let bad = [
        JitterConfig { sample_rate: 100, ..Default::default() },
        JitterConfig { frame_ms: 0, ..Default::default() },
        JitterConfig { sample_rate: 11025, frame_ms: 10, ..Default::default() },
        JitterConfig { min_delay_ms: 50.0, initial_delay_ms: 40.0, ..Default::default() },
        JitterConfig { max_delay_ms: f64::NAN, ..Default::default() },
    ];
    for cfg in bad {
        assert!(JitterBuffer::new(cfg).is_err(), "{cfg:?}");
    }
}

#[derive(Debug, Clone)]
enum Op {
    Push(u16, u32, usize, f64),
    Pop(f64),
}

fn op() -> impl Strategy<Value = Op> {
    let time = prop_oneof![8 => -1e3f64..1e6, 1 => any::<f64>()];
    prop_oneof![
        (any::<u16>(), any::<u32>(), prop_oneof![9 => Just(F), 1 => 0usize..400], time.clone())
            .prop_map(|(s, t, n, a)| Op::Push(s, t, n, a)),
        time.prop_map(Op::Pop),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_operations_never_panic(ops in proptest::collection::vec(op(), 0..300)) {
        let mut jb = buffer(20.0, 200.0, 40.0);
        for op in ops {
            match op {
                Op::Push(s, t, n, a) => {
                    let r = jb.push(s, t, &vec![1000; n], a);
                    prop_assert_eq!(r.is_err(), n != F || !a.is_finite());
                }
                Op::Pop(now) => match jb.pop(now) {
                    Ok(f) => prop_assert_eq!(f.pcm.len(), F),
                    Err(_) => prop_assert!(!now.is_finite()),
                },
            }
            prop_assert!(jb.len() <= jb.capacity);
        }
        let s = jb.stats();
        prop_assert!(s.packets_played <= s.packets_received);
        prop_assert!(s.mean_delay_ms.is_finite() && s.p95_delay_ms.is_finite());
    }

    #[test]
    fn bounded_jitter_plays_every_packet_in_order(
        seq0 in any::<u16>(), ts0 in any::<u32>(), jitter in proptest::collection::vec(0.0f64..60.0, 150),
    ) {
        let mut jb = buffer(80.0, 80.0, 80.0);
        let (frames, outcomes) = run(&mut jb, stream(seq0, ts0, 150, |i| jitter[i]), 180);
        prop_assert!(outcomes.iter().all(|&o| o == PushOutcome::Accepted));
        prop_assert!(strictly_increasing(&played(&frames)));
        let s = jb.stats();
        prop_assert_eq!(s.packets_late, 0);
        prop_assert_eq!(s.packets_played + s.frames_dropped, 150);
    }
}
