//! Voice activity detection in two stages: a cheap noise-floor gate on every frame, then a
//! network only where the gate sees possible speech: earshot (16 ms frames) by default, or the
//! Silero-class network of `neural_vad` (32 ms chunks) when its weights are given. A
//! hysteresis state machine on top turns probabilities into speech-start and -end events.
//!
//! 8 kHz telephone audio is upsampled with our own low-lag resampler first.

use std::sync::Arc;

use crate::error::MediaError;
use crate::neural_vad::{SileroModel, SileroStream, CHUNK};
use crate::resample::Resampler;
use earshot::Detector;

/// Samples per earshot frame (and per noise-gate step) at 16 kHz.
pub const FRAME_SAMPLES: usize = 256;
pub const FRAME_MS: f64 = 16.0;
/// Samples and duration of one neural-stage chunk at 16 kHz.
pub const NEURAL_FRAME_SAMPLES: usize = CHUNK;
pub const NEURAL_FRAME_MS: f64 = 32.0;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadConfig {
    /// Probability at or above which a frame counts as speech.
    pub threshold: f32,
    /// Probability below which a frame counts as silence (hysteresis; below `threshold`).
    pub release_threshold: f32,
    /// Speech must last this long before a start event is emitted.
    pub min_speech_ms: f64,
    /// Silence must last this long before an end event is emitted.
    pub min_silence_ms: f64,
}

impl Default for VadConfig {
    fn default() -> Self {
        Self { threshold: 0.5, release_threshold: 0.35, min_speech_ms: 64.0, min_silence_ms: 256.0 }
    }
}

impl VadConfig {
    pub fn validate(&self) -> Result<(), MediaError> {
        let unit = 0.0..=1.0;
        if !unit.contains(&self.threshold) || !unit.contains(&self.release_threshold) {
            return Err(MediaError::InvalidParameter("thresholds must lie in [0, 1]".into()));
        }
        if self.release_threshold > self.threshold {
            return Err(MediaError::InvalidParameter("release_threshold must not exceed threshold".into()));
        }
        for (name, v) in [("min_speech_ms", self.min_speech_ms), ("min_silence_ms", self.min_silence_ms)] {
            if !v.is_finite() || !(0.0..=60_000.0).contains(&v) {
                return Err(MediaError::InvalidParameter(format!("{name} must lie in [0, 60000]")));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum VadEventKind {
    SpeechStart,
    SpeechEnd,
}

/// An event with the stream time (ms since the first sample) at which speech began or ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadEvent {
    pub kind: VadEventKind,
    pub time_ms: f64,
}

/// What one call to [`Vad::process`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VadOutput {
    /// Probability of each detector frame completed by this call.
    pub probabilities: Vec<f32>,
    pub events: Vec<VadEvent>,
    /// Whether the state machine is inside speech after this call.
    pub speaking: bool,
}

/// Turns per-frame probabilities into start/end events (pure; separate from the detector so
/// that it can be tested on its own).
#[derive(Debug, Clone)]
pub struct Endpointer {
    config: VadConfig,
    frame_ms: f64,
    speaking: bool,
    /// Consecutive frames contradicting the current state, and when that run began.
    run_frames: u32,
    run_start_ms: f64,
    frames_seen: u64,
}

impl Endpointer {
    pub fn new(config: VadConfig) -> Self {
        Self::with_frame_ms(config, FRAME_MS)
    }

    pub fn with_frame_ms(config: VadConfig, frame_ms: f64) -> Self {
        Self { config, frame_ms, speaking: false, run_frames: 0, run_start_ms: 0.0, frames_seen: 0 }
    }

    pub fn speaking(&self) -> bool {
        self.speaking
    }

    pub fn reset(&mut self) {
        *self = Self::with_frame_ms(self.config, self.frame_ms);
    }

    pub fn push(&mut self, probability: f32) -> Option<VadEvent> {
        let start_ms = self.frames_seen as f64 * self.frame_ms;
        self.frames_seen += 1;
        let contradicts = if self.speaking {
            probability < self.config.release_threshold
        } else {
            probability >= self.config.threshold
        };
        if !contradicts {
            self.run_frames = 0;
            return None;
        }
        if self.run_frames == 0 {
            self.run_start_ms = start_ms;
        }
        self.run_frames += 1;
        let needed = if self.speaking { self.config.min_silence_ms } else { self.config.min_speech_ms };
        if self.run_frames as f64 * self.frame_ms < needed.max(self.frame_ms) {
            return None;
        }
        self.speaking = !self.speaking;
        self.run_frames = 0;
        let kind = if self.speaking { VadEventKind::SpeechStart } else { VadEventKind::SpeechEnd };
        Some(VadEvent { kind, time_ms: self.run_start_ms })
    }
}

/// The second stage: the network that scores frames the gate lets through.
enum Network {
    Earshot(Box<Detector>),
    Silero(Box<SileroStream>),
}

pub struct Vad {
    sample_rate: u32,
    upsampler: Option<Resampler>,
    network: Network,
    pending: Vec<i16>,
    endpointer: Endpointer,
    noise_gate: NoiseGate,
    closed_frames: u32,
    last_probability: f32,
}

/// How long the network keeps running after the noise gate closes (and, for Silero, after its
/// own probability falls below the release threshold), so that its context is fresh when
/// speech resumes after a short pause. After that the network is skipped; Silero's LSTM state
/// then stays as this much silence left it, which is what it would have learnt from more of
/// the same silence.
const WARM_MS: f64 = 64.0;

/// Scales the detector's probability down while the line holds nothing but its noise floor.
/// The network alone takes steady band-limited hiss on 8 kHz phone lines for speech; speech
/// always rises clearly above the floor that a minimum tracker follows. The gate compares the
/// mean power of the last ~130 ms, not the current frame, so that quiet consonants inside a
/// word keep their probability; a minimum sits a few dB under the mean of steady noise, hence
/// the open point well above the floor.
#[derive(Debug, Clone)]
pub struct NoiseGate {
    /// Per-frame energy (dB) over the last `FLOOR_FRAMES`; their minimum is the noise floor.
    history_db: [f32; Self::FLOOR_FRAMES],
    recent_power: [f32; Self::WINDOW],
    frames: usize,
    last_sample: f32,
}

impl NoiseGate {
    /// The floor is the quietest frame of the last ~0.64 s: speech always dips between
    /// syllables within that time, while a line that turns noisy is learnt within it.
    const FLOOR_FRAMES: usize = 40;
    /// Frames (16 ms) whose mean power is compared with the floor.
    const WINDOW: usize = 8;
    /// Fully open this far above the floor; fully closed at `OPEN_DB - SPAN_DB`.
    const OPEN_DB: f32 = 5.0;
    const SPAN_DB: f32 = 3.0;
    /// Frames below this (pre-emphasised RMS of ~3) are digital silence.
    const SILENT_DB: f32 = 10.0;

    pub fn new() -> Self {
        Self {
            history_db: [f32::INFINITY; Self::FLOOR_FRAMES],
            recent_power: [0.0; Self::WINDOW],
            frames: 0,
            last_sample: 0.0,
        }
    }

    pub fn push(&mut self, frame: &[i16]) -> f32 {
        // Pre-emphasis (a first difference) so that mains hum and rumble, which carry most of
        // the power of some lines but none of the speech cues, do not mask the speech.
        let mut prev = self.last_sample;
        let mut energy = 0.0f32;
        for &s in frame {
            let d = s as f32 - 0.95 * prev;
            energy += d * d;
            prev = s as f32;
        }
        self.last_sample = prev;
        let energy = energy / frame.len().max(1) as f32;
        let db = 10.0 * (energy + 1.0).log10();
        // Digital silence (before a stream's audio starts, or muted) says nothing about the
        // line's noise; counting it would open the gate for the first second of real noise.
        self.history_db[self.frames % Self::FLOOR_FRAMES] = if db < Self::SILENT_DB { f32::INFINITY } else { db };
        self.recent_power[self.frames % Self::WINDOW] = energy;
        self.frames += 1;
        let floor = self.history_db.iter().copied().fold(f32::INFINITY, f32::min);
        let mean = self.recent_power.iter().sum::<f32>() / Self::WINDOW.min(self.frames) as f32;
        let snr = 10.0 * (mean + 1.0).log10() - floor;
        ((snr - (Self::OPEN_DB - Self::SPAN_DB)) / Self::SPAN_DB).clamp(0.0, 1.0)
    }
}

impl Default for NoiseGate {
    fn default() -> Self {
        Self::new()
    }
}

impl Vad {
    pub fn new(sample_rate: u32, config: VadConfig) -> Result<Self, MediaError> {
        Self::with_model(sample_rate, config, None)
    }

    /// `model`: the Silero-class network as the second stage; `None`: earshot.
    pub fn with_model(sample_rate: u32, config: VadConfig, model: Option<Arc<SileroModel>>) -> Result<Self, MediaError> {
        config.validate()?;
        let (network, frame_ms) = match model {
            Some(m) => (Network::Silero(Box::new(SileroStream::new(m))), NEURAL_FRAME_MS),
            None => (Network::Earshot(Detector::default_boxed()), FRAME_MS),
        };
        let upsampler = match sample_rate {
            16_000 => None,
            8_000 => Some(Resampler::new(8_000, 16_000)?),
            other => return Err(MediaError::UnsupportedVadRate(other)),
        };
        Ok(Self {
            sample_rate,
            upsampler,
            network,
            pending: Vec::with_capacity(NEURAL_FRAME_SAMPLES * 2),
            endpointer: Endpointer::with_frame_ms(config, frame_ms),
            noise_gate: NoiseGate::new(),
            closed_frames: 0,
            last_probability: 0.0,
        })
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    pub fn config(&self) -> VadConfig {
        self.endpointer.config
    }

    /// Duration of one probability frame: 16 ms (earshot) or 32 ms (neural).
    pub fn frame_ms(&self) -> f64 {
        self.endpointer.frame_ms
    }

    pub fn is_neural(&self) -> bool {
        matches!(self.network, Network::Silero(_))
    }

    pub fn last_probability(&self) -> f32 {
        self.last_probability
    }

    pub fn speaking(&self) -> bool {
        self.endpointer.speaking()
    }

    pub fn reset(&mut self) {
        match &mut self.network {
            Network::Earshot(d) => d.reset(),
            Network::Silero(s) => s.reset(),
        }
        self.pending.clear();
        self.endpointer.reset();
        self.noise_gate = NoiseGate::new();
        self.closed_frames = 0;
        self.last_probability = 0.0;
        if let Some(r) = &mut self.upsampler {
            r.reset();
        }
    }

    /// Feeds PCM at the VAD's sample rate; any chunk size.
    pub fn process(&mut self, pcm: &[i16]) -> VadOutput {
        let mut out = VadOutput::default();
        self.process_into(pcm, &mut out);
        out
    }

    pub fn process_into(&mut self, pcm: &[i16], out: &mut VadOutput) {
        match &mut self.upsampler {
            Some(r) => r.process_i16(pcm, &mut self.pending),
            None => self.pending.extend_from_slice(pcm),
        }
        let size = if self.is_neural() { NEURAL_FRAME_SAMPLES } else { FRAME_SAMPLES };
        let warm_frames = (WARM_MS / self.frame_ms()).round() as u32;
        let frames = self.pending.len() / size;
        for f in 0..frames {
            let frame = &self.pending[f * size..(f + 1) * size];
            // The gate works in 16 ms steps; a 32 ms chunk is open if either half is.
            let gate = frame.chunks_exact(FRAME_SAMPLES).map(|h| self.noise_gate.push(h)).fold(0.0f32, f32::max);
            // A closed gate forces the probability to 0 whatever the network says, so skip the
            // network: most frames of a call (the caller listening) cost only the gate.
            if gate > 0.0 {
                self.closed_frames = 0;
            } else {
                self.closed_frames = self.closed_frames.saturating_add(1);
            }
            // The gate wakes the network; Silero, once it hears speech, also decides when it ends
            // (speech in loud noise dips under the gate's open point between syllables).
            let held = self.is_neural() && self.last_probability >= self.endpointer.config.release_threshold;
            let run = self.closed_frames <= warm_frames || held;
            let p = match &mut self.network {
                Network::Earshot(d) if run => d.predict_i16(frame).clamp(0.0, 1.0) * gate,
                Network::Silero(s) => match <&[i16; NEURAL_FRAME_SAMPLES]>::try_from(frame) {
                    Ok(chunk) if run => s.predict(chunk),
                    Ok(chunk) => {
                        s.skip(chunk);
                        0.0
                    }
                    Err(_) => 0.0,
                },
                Network::Earshot(_) => 0.0,
            };
            self.last_probability = p;
            out.probabilities.push(p);
            if let Some(ev) = self.endpointer.push(p) {
                out.events.push(ev);
            }
        }
        self.pending.drain(..frames * size);
        out.speaking = self.endpointer.speaking();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep() -> Endpointer {
        Endpointer::new(VadConfig { min_speech_ms: 48.0, min_silence_ms: 96.0, ..Default::default() })
    }

    #[test]
    fn short_blips_do_not_start_speech() {
        let mut e = ep();
        let events: Vec<_> = [0.9, 0.9, 0.1, 0.9, 0.1].iter().filter_map(|&p| e.push(p)).collect();
        assert!(events.is_empty());
    }

    #[test]
    fn start_and_end_are_stamped_at_the_run_start() {
        let mut e = ep();
        let probs = [0.0, 0.0, 0.8, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1];
        let events: Vec<_> = probs.iter().filter_map(|&p| e.push(p)).collect();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0], VadEvent { kind: VadEventKind::SpeechStart, time_ms: 32.0 });
        assert_eq!(events[1], VadEvent { kind: VadEventKind::SpeechEnd, time_ms: 96.0 });
    }

    #[test]
    fn hysteresis_keeps_speech_through_middling_frames() {
        let mut e = ep();
        for _ in 0..4 {
            e.push(0.9);
        }
        assert!(e.speaking());
        for _ in 0..20 {
            assert!(e.push(0.4).is_none());
        }
        assert!(e.speaking());
    }

    #[test]
    fn silence_gives_low_probability_and_odd_chunks_are_fine() {
        let mut v = Vad::new(8000, VadConfig::default()).unwrap();
        let mut total = 0;
        for n in [1usize, 7, 160, 333, 0, 1000] {
            total += v.process(&vec![0i16; n]).probabilities.len();
        }
        assert!(total > 0);
        assert!(v.last_probability() < 0.5);
        assert!(!v.speaking());
    }

    fn noise(n: usize, amp: f32, seed: &mut u32) -> Vec<i16> {
        (0..n)
            .map(|_| {
                *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((*seed >> 16) as f32 / 65_536.0 - 0.5) * 2.0 * amp
            })
            .map(|v| v as i16)
            .collect()
    }

    #[test]
    fn gate_closes_on_steady_noise_and_opens_for_a_louder_burst() {
        let mut gate = NoiseGate::new();
        let mut seed = 7;
        let mut last = 1.0;
        for _ in 0..100 {
            last = gate.push(&noise(FRAME_SAMPLES, 1000.0, &mut seed));
        }
        assert_eq!(last, 0.0, "a second of steady noise is the floor, not speech");
        let mut opened = 0.0f32;
        for _ in 0..4 {
            opened = opened.max(gate.push(&noise(FRAME_SAMPLES, 8000.0, &mut seed)));
        }
        assert_eq!(opened, 1.0, "18 dB over the floor opens the gate within a few frames");
    }

    #[test]
    fn digital_silence_is_not_a_floor() {
        let mut gate = NoiseGate::new();
        for _ in 0..50 {
            gate.push(&[0i16; FRAME_SAMPLES]);
        }
        let mut seed = 3;
        let mut closed_after = None;
        for i in 0..100 {
            if gate.push(&noise(FRAME_SAMPLES, 500.0, &mut seed)) == 0.0 {
                closed_after = Some(i);
                break;
            }
        }
        // Line noise after silence is learnt as the floor at once instead of passing for speech.
        assert!(closed_after.is_some_and(|i| i < 10), "{closed_after:?}");
    }

    #[test]
    fn neural_stage_takes_any_chunk_size_at_either_rate() {
        let bytes = crate::neural_vad::tests::synthetic_safetensors(None, None);
        let model = Arc::new(SileroModel::from_bytes(&bytes).unwrap());
        for rate in [8_000u32, 16_000] {
            let mut v = Vad::with_model(rate, VadConfig::default(), Some(Arc::clone(&model))).unwrap();
            assert!(v.is_neural() && v.frame_ms() == NEURAL_FRAME_MS);
            let mut seed = 11;
            let mut frames = 0;
            for n in [0usize, 1, 7, 160, 511, 513, 2048, 333] {
                let out = v.process(&noise(n, 20_000.0, &mut seed));
                assert!(out.probabilities.iter().all(|p| (0.0..=1.0).contains(p)));
                frames += out.probabilities.len();
            }
            assert!(frames > 0);
            v.reset();
            assert!(!v.speaking());
        }
    }

    #[test]
    fn bad_config_is_rejected() {
        assert!(Vad::new(44_100, VadConfig::default()).is_err());
        let bad = VadConfig { threshold: 0.3, release_threshold: 0.6, ..Default::default() };
        assert!(Vad::new(16_000, bad).is_err());
        let nan = VadConfig { min_speech_ms: f64::NAN, ..Default::default() };
        assert!(Vad::new(16_000, nan).is_err());
    }
}
