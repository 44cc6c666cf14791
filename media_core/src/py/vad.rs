use pyo3::prelude::*;

use super::arrays::pcm_i16;
use super::neural_vad::NeuralVad;
use super::to_py_err;
use crate::vad::{Vad as Core, VadConfig, VadEvent as CoreEvent, VadEventKind, VadOutput};

/// A speech boundary: `kind` is "start" or "end"; `time_ms` is stream time since the first sample.
#[pyclass(module = "media_core._native", frozen, get_all, eq)]
#[derive(Clone, PartialEq)]
pub struct VadEvent {
    kind: &'static str,
    time_ms: f64,
}

impl From<CoreEvent> for VadEvent {
    fn from(e: CoreEvent) -> Self {
        let kind = match e.kind {
            VadEventKind::SpeechStart => "start",
            VadEventKind::SpeechEnd => "end",
        };
        Self { kind, time_ms: e.time_ms }
    }
}

#[pymethods]
impl VadEvent {
    fn __repr__(&self) -> String {
        format!("VadEvent(kind={:?}, time_ms={:.1})", self.kind, self.time_ms)
    }
}

/// What one `Vad.process` call found: the probability of each completed 16 ms frame, the
/// events, and whether the caller is speaking now.
#[pyclass(module = "media_core._native", frozen, get_all)]
pub struct VadResult {
    probabilities: Vec<f32>,
    events: Vec<VadEvent>,
    speaking: bool,
}

impl From<VadOutput> for VadResult {
    fn from(o: VadOutput) -> Self {
        Self {
            probabilities: o.probabilities,
            events: o.events.into_iter().map(VadEvent::from).collect(),
            speaking: o.speaking,
        }
    }
}

#[pymethods]
impl VadResult {
    /// Probability of the last completed frame, or None if this chunk completed none.
    #[getter]
    fn probability(&self) -> Option<f32> {
        self.probabilities.last().copied()
    }

    fn __repr__(&self) -> String {
        format!(
            "VadResult(frames={}, speaking={}, events={})",
            self.probabilities.len(),
            if self.speaking { "True" } else { "False" },
            self.events.len()
        )
    }
}

pub fn config(
    threshold: f32,
    release_threshold: Option<f32>,
    min_speech_ms: f64,
    min_silence_ms: f64,
) -> VadConfig {
    VadConfig {
        threshold,
        release_threshold: release_threshold.unwrap_or((threshold - 0.15).max(0.0)),
        min_speech_ms,
        min_silence_ms,
    }
}

/// Voice activity detector for 8 or 16 kHz int16 PCM, fed in chunks of any size.
#[pyclass(module = "media_core._native")]
pub struct Vad {
    core: Core,
}

#[pymethods]
impl Vad {
    #[new]
    #[pyo3(signature = (sample_rate=16000, threshold=0.5, release_threshold=None, min_speech_ms=64.0, min_silence_ms=256.0, neural=None))]
    fn new(
        sample_rate: u32,
        threshold: f32,
        release_threshold: Option<f32>,
        min_speech_ms: f64,
        min_silence_ms: f64,
        neural: Option<PyRef<'_, NeuralVad>>,
    ) -> PyResult<Self> {
        let cfg = config(threshold, release_threshold, min_speech_ms, min_silence_ms);
        let model = neural.map(|n| n.model());
        Ok(Self { core: Core::with_model(sample_rate, cfg, model).map_err(to_py_err)? })
    }

    fn process(&mut self, pcm: &Bound<'_, PyAny>) -> PyResult<VadResult> {
        let pcm = pcm_i16(pcm)?;
        Ok(self.core.process(&pcm).into())
    }

    fn reset(&mut self) {
        self.core.reset();
    }

    #[getter]
    fn sample_rate(&self) -> u32 {
        self.core.sample_rate()
    }

    #[getter]
    fn speaking(&self) -> bool {
        self.core.speaking()
    }

    #[getter]
    fn threshold(&self) -> f32 {
        self.core.config().threshold
    }

    #[getter]
    fn frame_ms(&self) -> f64 {
        self.core.frame_ms()
    }

    /// Whether the second stage is the Silero-class network (else earshot).
    #[getter]
    fn neural(&self) -> bool {
        self.core.is_neural()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<VadEvent>()?;
    m.add_class::<VadResult>()?;
    m.add_class::<Vad>()
}
