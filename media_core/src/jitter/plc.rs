//! Packet-loss concealment for the jitter buffer, and the crossfades that avoid clicks.

const HOLD_MS: usize = 10;
const FADE_END_MS: usize = 60;

/// Packet-loss concealment: pitch-period repetition with a fade to exact silence.
#[derive(Debug, Clone)]
pub(super) struct Concealer {
    history: Vec<f32>,
    period: Vec<f32>,
    phase: usize,
    lost: usize,
    pub(super) active: bool,
    correction: f32,
    correction_len: usize,
    min_lag: usize,
    max_lag: usize,
    hold: usize,
    fade_end: usize,
}

impl Concealer {
    pub(super) fn new(rate: usize, frame: usize) -> Self {
        let (min_lag, max_lag) = (rate / 400, rate / 70);
        Self {
            history: vec![0.0; (2 * max_lag).max(frame)],
            period: Vec::new(),
            phase: 0,
            lost: 0,
            active: false,
            correction: 0.0,
            correction_len: 1,
            min_lag,
            max_lag,
            hold: rate * HOLD_MS / 1000,
            fade_end: rate * FADE_END_MS / 1000,
        }
    }

    /// Record real output; ends any loss run.
    pub(super) fn push_real(&mut self, out: &[f32]) {
        let n = self.history.len();
        if out.len() >= n {
            self.history.copy_from_slice(&out[out.len() - n..]);
        } else {
            self.history.copy_within(out.len().., 0);
            self.history[n - out.len()..].copy_from_slice(out);
        }
        self.active = false;
    }

    fn pitch_lag(&self) -> Option<usize> {
        let h = &self.history;
        let win = self.max_lag;
        let tail = &h[h.len() - win..];
        let e_tail: f32 = tail.iter().map(|x| x * x).sum();
        let mut best = (0.3f32, None);
        for lag in self.min_lag..=self.max_lag {
            let past = &h[h.len() - win - lag..h.len() - lag];
            let (mut xy, mut yy) = (0.0f32, 0.0f32);
            for (a, b) in tail.iter().zip(past) {
                xy += a * b;
                yy += b * b;
            }
            let c = xy / (e_tail * yy).sqrt().max(1.0);
            if c > best.0 {
                best = (c, Some(lag));
            }
        }
        best.1
    }

    fn start(&mut self) {
        let h = &self.history;
        let lag = self.pitch_lag().unwrap_or(h.len() - 1);
        self.period = h[h.len() - lag..].to_vec();
        self.phase = 0;
        self.lost = 0;
        self.active = true;
        // Offset so the first synthesised sample continues the last real one; decays over 2 ms.
        let last = h[h.len() - 1];
        self.correction = last - h[h.len() - 1 - lag];
        self.correction_len = (self.hold / 5).clamp(1, lag);
        if self.period.iter().all(|&x| x == 0.0) {
            self.lost = self.fade_end;
        }
    }

    /// Whether an active loss run still produces sound (a crossfade from it is worth doing).
    pub(super) fn audible(&self) -> bool {
        self.active && self.gain() > 0.0
    }

    fn gain(&self) -> f32 {
        if self.lost < self.hold {
            1.0
        } else if self.lost >= self.fade_end {
            0.0
        } else {
            1.0 - (self.lost - self.hold) as f32 / (self.fade_end - self.hold) as f32
        }
    }

    /// Synthesise `out.len()` samples; returns how many carry a non-zero gain.
    pub(super) fn fill(&mut self, out: &mut [f32]) -> usize {
        if !self.active {
            self.start();
        }
        let mut audible = 0;
        for o in out.iter_mut() {
            let g = self.gain();
            if g == 0.0 {
                *o = 0.0;
                continue;
            }
            let k = self.lost.min(self.correction_len);
            let fix = self.correction * (1.0 - k as f32 / self.correction_len as f32);
            *o = g * (self.period[self.phase] + fix);
            self.phase = (self.phase + 1) % self.period.len();
            self.lost += 1;
            audible += 1;
        }
        audible
    }
}

pub(super) fn to_i16(x: f32) -> i16 {
    x.round().clamp(-32768.0, 32767.0) as i16
}

pub(super) fn crossfade(from: &[f32], into: &mut [f32]) {
    let n = from.len().min(into.len());
    for i in 0..n {
        let w = (i + 1) as f32 / (n + 1) as f32;
        into[i] = from[i] * (1.0 - w) + into[i] * w;
    }
}
