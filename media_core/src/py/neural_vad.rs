use std::sync::Arc;

use pyo3::prelude::*;

use super::arrays::{binary, pcm_i16};
use super::to_py_err;
use crate::neural_vad::{ChunkedStream, SileroModel, CHUNK, SAMPLE_RATE};

/// The Silero-class VAD network on weights given as the bytes of a `.onnx` or `.safetensors`
/// file. Scores 16 kHz int16 audio in 512-sample chunks; also the `neural=` argument of `Vad`
/// and `InboundPath`, which share its weights (each gets its own state).
#[pyclass(module = "media_core._native", subclass)]
pub struct NeuralVad {
    model: Arc<SileroModel>,
    stream: ChunkedStream,
}

impl NeuralVad {
    pub fn model(&self) -> Arc<SileroModel> {
        Arc::clone(&self.model)
    }
}

#[pymethods]
impl NeuralVad {
    #[new]
    fn new(py: Python<'_>, weights: &Bound<'_, PyAny>) -> PyResult<Self> {
        let bytes = binary(weights)?;
        let model = Arc::new(py.detach(|| SileroModel::from_bytes(&bytes)).map_err(to_py_err)?);
        Ok(Self { stream: ChunkedStream::new(Arc::clone(&model)), model })
    }

    /// Probability of each 512-sample chunk completed by this call (state carries over).
    fn probabilities(&mut self, py: Python<'_>, pcm: &Bound<'_, PyAny>) -> PyResult<Vec<f32>> {
        let pcm = pcm_i16(pcm)?;
        let stream = &mut self.stream;
        Ok(py.detach(|| stream.process(&pcm)))
    }

    fn reset(&mut self) {
        self.stream.reset();
    }

    #[getter]
    fn chunk_samples(&self) -> usize {
        CHUNK
    }

    #[getter]
    fn sample_rate(&self) -> u32 {
        SAMPLE_RATE
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NeuralVad>()
}
