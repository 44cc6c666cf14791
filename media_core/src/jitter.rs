//! Adaptive jitter buffer for RTP-style packets (16-bit sequence number, 32-bit timestamp in
//! samples, one frame of int16 PCM each). The caller supplies the clock, so runs are
//! deterministic: `push` at arrival time, `pop` once per frame from the playout clock.
//!
//! - Sequence numbers and timestamps are unwrapped RFC 3550 style. A jump beyond
//!   [`MAX_DROPOUT`] ahead or [`MAX_MISORDER`] behind is held on probation; a second packet that
//!   continues it confirms a stream restart (the buffer resyncs on it), otherwise it is discarded.
//! - Playout follows sequence order and timestamps: a timestamp gap with no sequence gap (DTX)
//!   is played as concealment fading to silence.
//! - The target delay is a high percentile of relative transit (arrival minus media time, over a
//!   sliding window, RFC 3550 jitter as a fast floor), clamped to [min, max]. The playout delay
//!   follows it by inserting a concealed frame (when below it) or dropping a frame (when over
//!   1.5 frames above; low-energy frames first, at most one in three): a 1.5-frame dead band. An empty buffer stalls playout (concealment) up to the maximum delay rather than losing
//!   the packets of a delay spike; a gap before a due packet is skipped rather than concealed.
//! - Concealment repeats the last pitch period (normalised autocorrelation) with a per-sample
//!   fade that reaches exact silence 60 ms into a loss; transitions are crossfaded.

use std::collections::BTreeMap;

use crate::error::MediaError;

mod estimate;
mod plc;
#[cfg(test)]
mod tests;

use estimate::Estimator;
use plc::{crossfade, to_i16, Concealer};

/// Forward sequence jump (packets) still taken as the same stream.
pub const MAX_DROPOUT: i64 = 3000;
/// Backward distance (packets) from the newest still taken as a late or reordered packet.
pub const MAX_MISORDER: i64 = 100;
/// A held packet is confirmed by a packet at most this many sequence numbers after it.
const CONFIRM_SPAN: u16 = 16;
const MIN_ESTIMATE: usize = 16;
const JITTER_FLOOR: f64 = 2.0;
const HIST_MS: usize = 5000;
const SEEN_RING: usize = 1024;
const DROP_SPACING: u32 = 3;
const DROP_PATIENCE: u32 = 25;
const XFADE_MS: usize = 4;

/// Construction parameters; see [`JitterConfig::validate`] for the accepted ranges.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JitterConfig {
    pub sample_rate: u32,
    pub frame_ms: u32,
    pub min_delay_ms: f64,
    pub max_delay_ms: f64,
    pub initial_delay_ms: f64,
}

impl Default for JitterConfig {
    fn default() -> Self {
        Self { sample_rate: 8000, frame_ms: 20, min_delay_ms: 20.0, max_delay_ms: 200.0, initial_delay_ms: 40.0 }
    }
}

impl JitterConfig {
    pub fn validate(&self) -> Result<(), MediaError> {
        let bad = |m: String| Err(MediaError::InvalidParameter(m));
        if !(4000..=192_000).contains(&self.sample_rate) {
            return Err(MediaError::UnsupportedRate(self.sample_rate));
        }
        if !(5..=120).contains(&self.frame_ms) || !(self.sample_rate as u64 * self.frame_ms as u64).is_multiple_of(1000) {
            return bad(format!("frame_ms must lie in [5, 120] and give whole samples, got {}", self.frame_ms));
        }
        let (lo, init, hi) = (self.min_delay_ms, self.initial_delay_ms, self.max_delay_ms);
        if ![lo, init, hi].iter().all(|v| v.is_finite()) || lo < 0.0 || hi > 4000.0 {
            return bad("delays must be finite and lie in [0, 4000] ms".into());
        }
        if !(lo <= init && init <= hi) {
            return bad(format!("need min_delay_ms <= initial_delay_ms <= max_delay_ms, got {lo}, {init}, {hi}"));
        }
        Ok(())
    }

    pub fn frame_samples(&self) -> usize {
        (self.sample_rate as usize * self.frame_ms as usize) / 1000
    }
}

/// What `push` did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Buffered for playout.
    Accepted,
    /// Already buffered or already played: ignored.
    Duplicate,
    /// Its playout time has passed: discarded (late loss).
    Late,
    /// Far outside the expected sequence range: held until the next packet shows a restart.
    Held,
    /// Confirmed a stream restart: the buffer was flushed and resyncs on the new stream.
    Reset,
}

impl PushOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "ok",
            Self::Duplicate => "duplicate",
            Self::Late => "late",
            Self::Held => "held",
            Self::Reset => "reset",
        }
    }
}

/// What a popped frame holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A received packet (its first milliseconds may be crossfaded from concealment).
    Normal,
    /// Synthesised for a missing packet or an inserted frame (not all zero).
    Concealed,
    /// Exact zeros: before playout starts, or once concealment has faded out.
    Silence,
}

impl FrameKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Concealed => "concealed",
            Self::Silence => "silence",
        }
    }
}

/// Counters since construction (or `reset`). Delays are what a played packet waited between
/// arrival and playout.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JitterStats {
    pub packets_received: u64,
    pub packets_played: u64,
    pub packets_late: u64,
    pub packets_duplicate: u64,
    /// Expected minus received (RFC 3550): packets that never arrived.
    pub packets_lost: u64,
    /// Held far-jump packets that no restart confirmed, plus packets flushed by overflow.
    pub packets_discarded: u64,
    pub frames_normal: u64,
    pub frames_concealed: u64,
    pub frames_silence: u64,
    pub frames_inserted: u64,
    pub frames_dropped: u64,
    pub concealed_samples: u64,
    pub resets: u64,
    pub mean_delay_ms: f64,
    pub p95_delay_ms: f64,
    pub target_delay_ms: f64,
    pub current_delay_ms: f64,
    pub jitter_ms: f64,
}

/// One popped frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub pcm: Vec<i16>,
    pub kind: FrameKind,
}

#[derive(Debug, Clone)]
struct Packet {
    ts: i64,
    arrival_ms: f64,
    pcm: Vec<i16>,
}

#[derive(Debug, Clone)]
struct Held {
    seq: u16,
    ts: u32,
    arrival_ms: f64,
    pcm: Vec<i16>,
}

#[derive(Debug, Clone, Copy)]
struct Playout {
    seq: i64,
    ts: i64,
}

fn energy(pcm: &[i16]) -> f64 {
    pcm.iter().map(|&s| (s as f64) * (s as f64)).sum::<f64>() / pcm.len().max(1) as f64
}

/// The adaptive jitter buffer; see the module documentation.
#[derive(Debug, Clone)]
pub struct JitterBuffer {
    cfg: JitterConfig,
    frame: usize,
    frame_ms: f64,
    buffer: BTreeMap<i64, Packet>,
    capacity: usize,
    seq_max: Option<i64>,
    seq_min: i64,
    ts_max: i64,
    ts_origin: i64,
    held: Option<Held>,
    play: Option<Playout>,
    seen: Vec<i64>,
    est: Estimator,
    target_ms: f64,
    plc: Concealer,
    last_inserted: bool,
    since_drop: u32,
    excess_streak: u32,
    energy_avg: f64,
    expected_before: u64,
    unique: u64,
    delay_hist: Vec<u32>,
    delay_sum: f64,
    stats: JitterStats,
}

impl JitterBuffer {
    pub fn new(cfg: JitterConfig) -> Result<Self, MediaError> {
        cfg.validate()?;
        Ok(Self::fresh(cfg))
    }

    fn fresh(cfg: JitterConfig) -> Self {
        let frame = cfg.frame_samples();
        let capacity = 2 * (cfg.max_delay_ms / cfg.frame_ms as f64).ceil() as usize + 16;
        Self {
            cfg,
            frame,
            frame_ms: cfg.frame_ms as f64,
            buffer: BTreeMap::new(),
            capacity,
            seq_max: None,
            seq_min: 0,
            ts_max: 0,
            ts_origin: 0,
            held: None,
            play: None,
            seen: vec![i64::MIN; SEEN_RING],
            est: Estimator::default(),
            target_ms: cfg.initial_delay_ms,
            plc: Concealer::new(cfg.sample_rate as usize, frame),
            last_inserted: false,
            since_drop: DROP_SPACING,
            excess_streak: 0,
            energy_avg: 0.0,
            expected_before: 0,
            unique: 0,
            delay_hist: vec![0; HIST_MS + 1],
            delay_sum: 0.0,
            stats: JitterStats { target_delay_ms: cfg.initial_delay_ms, ..Default::default() },
        }
    }

    pub fn config(&self) -> JitterConfig {
        self.cfg
    }

    /// The delay the playout currently aims for.
    pub fn target_delay_ms(&self) -> f64 {
        self.target_ms
    }

    /// Packets waiting for playout.
    pub fn len(&self) -> usize {
        self.buffer.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buffer.is_empty()
    }

    /// Forget the stream and the statistics (same configuration).
    pub fn reset(&mut self) {
        *self = Self::fresh(self.cfg);
    }

    fn ts_ms(&self, ts: i64) -> f64 {
        (ts - self.ts_origin) as f64 * 1000.0 / self.cfg.sample_rate as f64
    }

    fn seen_slot(seq: i64) -> usize {
        seq.rem_euclid(SEEN_RING as i64) as usize
    }

    fn mark_seen(&mut self, seq: i64) {
        self.seen[Self::seen_slot(seq)] = seq;
    }

    fn expected(&self) -> u64 {
        self.expected_before + self.seq_max.map_or(0, |m| (m - self.seq_min + 1) as u64)
    }

    fn begin_stream(&mut self, seq: u16, ts: u32) {
        self.expected_before = self.expected();
        let flushed = std::mem::take(&mut self.buffer).len() as u64;
        self.stats.packets_discarded += flushed;
        self.unique = self.unique.saturating_sub(flushed);
        self.expected_before = self.expected_before.saturating_sub(flushed);
        self.seq_max = Some(seq as i64);
        self.seq_min = seq as i64;
        self.ts_max = ts as i64;
        self.ts_origin = ts as i64;
        self.play = None;
        self.est = Estimator::default();
        self.seen.fill(i64::MIN);
    }

    /// Offer one packet. `pcm` must hold exactly one frame; `arrival_ms` must be finite.
    pub fn push(&mut self, seq: u16, ts: u32, pcm: &[i16], arrival_ms: f64) -> Result<PushOutcome, MediaError> {
        if pcm.len() != self.frame {
            return Err(MediaError::WrongFrameSize(pcm.len(), self.frame));
        }
        if !arrival_ms.is_finite() {
            return Err(MediaError::InvalidParameter("arrival_ms must be finite".into()));
        }
        self.stats.packets_received += 1;
        let Some(max) = self.seq_max else {
            self.begin_stream(seq, ts);
            return Ok(self.accept(seq as i64, ts, pcm, arrival_ms));
        };
        let d = seq.wrapping_sub(max as u16) as i16 as i64;
        if !(-MAX_MISORDER..MAX_DROPOUT).contains(&d) {
            if let Some(h) = self.held.take() {
                if (1..=CONFIRM_SPAN).contains(&seq.wrapping_sub(h.seq)) {
                    self.stats.resets += 1;
                    self.begin_stream(h.seq, h.ts);
                    self.accept(h.seq as i64, h.ts, &h.pcm, h.arrival_ms);
                    let ext = h.seq as i64 + seq.wrapping_sub(h.seq) as i64;
                    self.accept(ext, ts, pcm, arrival_ms);
                    return Ok(PushOutcome::Reset);
                }
                self.stats.packets_discarded += 1;
            }
            self.held = Some(Held { seq, ts, arrival_ms, pcm: pcm.to_vec() });
            return Ok(PushOutcome::Held);
        }
        if self.held.take().is_some() {
            self.stats.packets_discarded += 1;
        }
        let ext = max + d;
        if self.seen[Self::seen_slot(ext)] == ext || self.buffer.contains_key(&ext) {
            self.stats.packets_duplicate += 1;
            return Ok(PushOutcome::Duplicate);
        }
        Ok(self.accept(ext, ts, pcm, arrival_ms))
    }

    fn accept(&mut self, ext: i64, ts: u32, pcm: &[i16], arrival_ms: f64) -> PushOutcome {
        let max = self.seq_max.unwrap_or(ext);
        self.seq_max = Some(max.max(ext));
        self.seq_min = self.seq_min.min(ext);
        self.unique += 1;
        let ext_ts = self.ts_max + ts.wrapping_sub(self.ts_max as u32) as i32 as i64;
        self.ts_max = self.ts_max.max(ext_ts);
        let discontinuity = (2.0 * self.cfg.max_delay_ms).max(3000.0);
        self.est.add(arrival_ms - self.ts_ms(ext_ts), discontinuity);
        if self.play.is_some_and(|p| ext < p.seq) {
            self.mark_seen(ext);
            self.stats.packets_late += 1;
            return PushOutcome::Late;
        }
        self.buffer.insert(ext, Packet { ts: ext_ts, arrival_ms, pcm: pcm.to_vec() });
        while self.buffer.len() > self.capacity {
            if let Some((s, p)) = self.buffer.pop_first() {
                self.mark_seen(s);
                self.stats.packets_discarded += 1;
                if let Some(play) = self.play.as_mut() {
                    play.seq = play.seq.max(s + 1);
                    play.ts = play.ts.max(p.ts + self.frame as i64);
                }
            }
        }
        PushOutcome::Accepted
    }

    fn refresh_target(&mut self) {
        if self.est.window.len() >= MIN_ESTIMATE {
            let spread = self.est.stats().map_or(0.0, |(_, s)| s);
            let want = spread.max(JITTER_FLOOR * self.est.jitter);
            self.target_ms = want.clamp(self.cfg.min_delay_ms, self.cfg.max_delay_ms);
        }
    }

    fn conceal(&mut self, inserted: bool) -> Frame {
        let mut buf = vec![0.0f32; self.frame];
        let audible = self.plc.fill(&mut buf);
        self.stats.frames_inserted += inserted as u64;
        let kind = if audible > 0 {
            self.stats.frames_concealed += 1;
            self.stats.concealed_samples += audible as u64;
            FrameKind::Concealed
        } else {
            self.stats.frames_silence += 1;
            FrameKind::Silence
        };
        Frame { pcm: buf.into_iter().map(to_i16).collect(), kind }
    }

    /// The next frame of the playout clock, called once per frame at `now_ms`.
    pub fn pop(&mut self, now_ms: f64) -> Result<Frame, MediaError> {
        if !now_ms.is_finite() {
            return Err(MediaError::InvalidParameter("now_ms must be finite".into()));
        }
        self.refresh_target();
        self.stats.target_delay_ms = self.target_ms;
        let base = self.est.stats().map_or(0.0, |(b, _)| b);
        let half_ms = self.frame_ms / 2.0;
        if self.play.is_none() {
            if let Some((&seq, p)) = self.buffer.first_key_value() {
                if now_ms + half_ms >= self.ts_ms(p.ts) + base + self.target_ms {
                    self.play = Some(Playout { seq, ts: p.ts });
                }
            }
        }
        let Some(mut play) = self.play else { return Ok(self.conceal(false)) };
        let cur = now_ms - self.ts_ms(play.ts) - base;
        self.stats.current_delay_ms = cur;
        self.since_drop = self.since_drop.saturating_add(1);
        let frame = self.frame as i64;
        let Some((&seq, p)) = self.buffer.first_key_value() else {
            // Underrun: stall (grow the delay) unless that would pass the maximum.
            let stall = cur + self.frame_ms <= self.cfg.max_delay_ms;
            if !stall {
                self.play = Some(Playout { seq: play.seq + 1, ts: play.ts + frame });
            }
            return Ok(self.conceal(stall));
        };
        if p.ts > play.ts + frame / 2 && now_ms + half_ms < self.ts_ms(p.ts) + base + self.target_ms {
            // A gap (loss or DTX) before the next packet, which is not due yet: conceal one slot.
            play.ts += frame;
            play.seq = (play.seq + 1).min(seq);
            self.play = Some(play);
            return Ok(self.conceal(false));
        }
        // The next packet is due (a gap before it, if any, is skipped): delay as if it plays now.
        let cur = now_ms - self.ts_ms(p.ts) - base;
        self.stats.current_delay_ms = cur;
        if cur < self.target_ms && !self.last_inserted {
            self.last_inserted = true;
            return Ok(self.conceal(true));
        }
        self.last_inserted = false;
        let excess = cur - self.target_ms;
        self.excess_streak = if excess > 1.5 * self.frame_ms { self.excess_streak + 1 } else { 0 };
        let next_ts = p.ts + frame;
        let can_drop = self.excess_streak > 0
            && self.since_drop >= DROP_SPACING
            && self.buffer.get(&(seq + 1)).is_some_and(|q| q.ts == next_ts);
        let quiet = energy(&p.pcm) <= 0.25 * self.energy_avg;
        if can_drop && (quiet || self.excess_streak >= DROP_PATIENCE || excess >= 4.0 * self.frame_ms) {
            let dropped = self.buffer.remove(&seq).map(|d| d.pcm).unwrap_or_default();
            self.mark_seen(seq);
            self.stats.frames_dropped += 1;
            self.since_drop = 0;
            return Ok(self.play_packet(seq + 1, now_ms, Some(&dropped)));
        }
        Ok(self.play_packet(seq, now_ms, None))
    }

    fn play_packet(&mut self, seq: i64, now_ms: f64, dropped: Option<&[i16]>) -> Frame {
        let Some(p) = self.buffer.remove(&seq) else { return self.conceal(false) };
        self.mark_seen(seq);
        self.play = Some(Playout { seq: seq + 1, ts: p.ts + self.frame as i64 });
        let mut out: Vec<f32> = p.pcm.iter().map(|&s| s as f32).collect();
        let xfade = (self.cfg.sample_rate as usize * XFADE_MS / 1000).min(self.frame);
        if let Some(d) = dropped {
            let from: Vec<f32> = d.iter().take(xfade).map(|&s| s as f32).collect();
            crossfade(&from, &mut out);
        } else if self.plc.audible() {
            let mut from = vec![0.0f32; xfade];
            self.plc.fill(&mut from);
            crossfade(&from, &mut out);
        }
        self.plc.push_real(&out);
        let waited = (now_ms - p.arrival_ms).max(0.0);
        self.delay_sum += waited;
        self.delay_hist[(waited as usize).min(HIST_MS)] += 1;
        self.energy_avg += (energy(&p.pcm) - self.energy_avg) * 0.05;
        self.stats.packets_played += 1;
        self.stats.frames_normal += 1;
        Frame { pcm: out.into_iter().map(to_i16).collect(), kind: FrameKind::Normal }
    }

    pub fn stats(&self) -> JitterStats {
        let mut s = self.stats.clone();
        s.packets_lost = self.expected().saturating_sub(self.unique);
        s.jitter_ms = self.est.jitter;
        if s.packets_played > 0 {
            s.mean_delay_ms = self.delay_sum / s.packets_played as f64;
            let rank = (s.packets_played as f64 * 0.95).ceil() as u64;
            let mut acc = 0u64;
            let bin = self.delay_hist.iter().position(|&c| {
                acc += c as u64;
                acc >= rank
            });
            s.p95_delay_ms = bin.unwrap_or(HIST_MS) as f64 + 0.5;
        }
        s
    }
}
