use numpy::PyArray1;
use pyo3::prelude::*;

use super::arrays::{bytes_like, i16_array, pcm_i16, DETACH_THRESHOLD};
use super::to_py_err;
use super::neural_vad::NeuralVad;
use super::vad::{config, VadEvent};
use crate::telephony::{Codec, InboundFrame as CoreFrame, InboundPath as CoreIn, OutboundPath as CoreOut};

/// One decoded carrier media message: PCM at the STT rate plus the VAD's view of it.
#[pyclass(module = "media_core._native", frozen, get_all)]
pub struct InboundFrame {
    pcm: Py<PyArray1<i16>>,
    probabilities: Vec<f32>,
    events: Vec<VadEvent>,
    speaking: bool,
    sequence_number: Option<u64>,
    timestamp_ms: Option<u64>,
    track: String,
}

impl InboundFrame {
    fn build(py: Python<'_>, f: CoreFrame) -> Self {
        Self {
            pcm: i16_array(py, f.pcm).unbind(),
            probabilities: f.vad.probabilities,
            events: f.vad.events.into_iter().map(VadEvent::from).collect(),
            speaking: f.vad.speaking,
            sequence_number: f.sequence_number,
            timestamp_ms: f.timestamp_ms,
            track: f.track,
        }
    }
}

/// Inbound fused path: one call per carrier message, JSON text in, PCM + VAD out.
#[pyclass(module = "media_core._native")]
pub struct InboundPath {
    core: CoreIn,
}

#[pymethods]
impl InboundPath {
    #[new]
    #[pyo3(signature = (stt_rate=16000, codec="ulaw", threshold=0.5, release_threshold=None, min_speech_ms=64.0, min_silence_ms=256.0, max_message_bytes=crate::telephony::DEFAULT_MAX_MESSAGE_BYTES, neural=None))]
    #[allow(clippy::too_many_arguments)] // Python keyword arguments, one per setting
    fn new(
        stt_rate: u32,
        codec: &str,
        threshold: f32,
        release_threshold: Option<f32>,
        min_speech_ms: f64,
        min_silence_ms: f64,
        max_message_bytes: usize,
        neural: Option<PyRef<'_, NeuralVad>>,
    ) -> PyResult<Self> {
        let cfg = config(threshold, release_threshold, min_speech_ms, min_silence_ms);
        let codec = Codec::parse(codec).map_err(to_py_err)?;
        let model = neural.map(|n| n.model());
        Ok(Self { core: CoreIn::with_model(stt_rate, codec, cfg, max_message_bytes, model).map_err(to_py_err)? })
    }

    /// Decodes a whole carrier message (str or bytes). Returns None for valid JSON that is not
    /// a `media` event; raises MediaError for malformed JSON, base64 or oversized messages.
    fn push_message(&mut self, py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<Option<InboundFrame>> {
        let bytes = bytes_like(message)?;
        let frame = self.core.push_message(&bytes).map_err(to_py_err)?;
        Ok(frame.map(|f| InboundFrame::build(py, f)))
    }

    /// Decodes just the base64 payload of a media message.
    fn push_payload(&mut self, py: Python<'_>, payload: &Bound<'_, PyAny>) -> PyResult<InboundFrame> {
        let bytes = bytes_like(payload)?;
        let frame = self.core.push_payload(&bytes).map_err(to_py_err)?;
        Ok(InboundFrame::build(py, frame))
    }

    fn reset(&mut self) {
        self.core.reset();
    }

    #[getter]
    fn stt_rate(&self) -> u32 {
        self.core.stt_rate()
    }

    #[getter]
    fn speaking(&self) -> bool {
        self.core.vad().speaking()
    }
}

/// Outbound fused path: PCM at the TTS rate in, ready-to-send 20 ms `media` messages out.
#[pyclass(module = "media_core._native")]
pub struct OutboundPath {
    core: CoreOut,
}

#[pymethods]
impl OutboundPath {
    #[new]
    #[pyo3(signature = (stream_sid, tts_rate=24000, codec="ulaw"))]
    fn new(stream_sid: &str, tts_rate: u32, codec: &str) -> PyResult<Self> {
        let codec = Codec::parse(codec).map_err(to_py_err)?;
        Ok(Self { core: CoreOut::new(stream_sid, tts_rate, codec).map_err(to_py_err)? })
    }

    /// Returns the JSON text of every complete 20 ms frame; a remainder waits for more audio.
    fn push(&mut self, py: Python<'_>, pcm: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
        let pcm = pcm_i16(pcm)?;
        let core = &mut self.core;
        Ok(if pcm.len() >= DETACH_THRESHOLD { py.detach(|| core.push(&pcm)) } else { core.push(&pcm) })
    }

    /// Ends the utterance: the remaining audio padded with silence to a whole frame.
    fn flush(&mut self) -> Vec<String> {
        self.core.flush()
    }

    /// Drops audio not yet emitted (barge-in).
    fn clear(&mut self) {
        self.core.clear();
    }

    #[getter]
    fn tts_rate(&self) -> u32 {
        self.core.tts_rate()
    }

    #[getter]
    fn pending_samples(&self) -> usize {
        self.core.pending_samples()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<InboundFrame>()?;
    m.add_class::<InboundPath>()?;
    m.add_class::<OutboundPath>()
}
