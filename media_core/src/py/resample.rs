use numpy::PyArray1;
use pyo3::prelude::*;

use super::arrays::{i16_array, pcm_any, Pcm, DETACH_THRESHOLD};
use super::to_py_err;
use crate::resample::{to_i16, Resampler as Core};

/// Streaming resampler for one mono stream. `process` takes int16 or float32 chunks of any
/// size and returns the same dtype; `flush` returns the tail and resets for a new stream.
#[pyclass(module = "media_core._native")]
pub struct Resampler {
    core: Core,
    /// dtype of the last chunk, so that `flush` answers in kind.
    float_io: bool,
}

fn f32_array(py: Python<'_>, v: Vec<f32>) -> Bound<'_, PyArray1<f32>> {
    PyArray1::from_vec(py, v.into_iter().map(|x| x / 32768.0).collect())
}

impl Resampler {
    fn run<'py>(&mut self, py: Python<'py>, input: Vec<f32>) -> Vec<f32> {
        let core = &mut self.core;
        let mut out = Vec::with_capacity(core.max_output_len(input.len()));
        if input.len() >= DETACH_THRESHOLD {
            py.detach(|| core.process_f32(&input, &mut out));
        } else {
            core.process_f32(&input, &mut out);
        }
        out
    }
}

#[pymethods]
impl Resampler {
    #[new]
    fn new(in_rate: u32, out_rate: u32) -> PyResult<Self> {
        Ok(Self { core: Core::new(in_rate, out_rate).map_err(to_py_err)?, float_io: false })
    }

    fn process<'py>(&mut self, py: Python<'py>, chunk: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        match pcm_any(chunk)? {
            Pcm::I16(v) => {
                self.float_io = false;
                let floats = v.iter().map(|&s| s as f32).collect();
                let out = self.run(py, floats);
                Ok(i16_array(py, out.into_iter().map(to_i16).collect()).into_any())
            }
            Pcm::F32(v) => {
                self.float_io = true;
                let out = self.run(py, v);
                Ok(f32_array(py, out).into_any())
            }
        }
    }

    fn flush<'py>(&mut self, py: Python<'py>) -> Bound<'py, PyAny> {
        let mut out = Vec::new();
        self.core.flush_f32(&mut out);
        if self.float_io {
            f32_array(py, out).into_any()
        } else {
            i16_array(py, out.into_iter().map(to_i16).collect()).into_any()
        }
    }

    fn reset(&mut self) {
        self.core.reset();
    }

    #[getter]
    fn in_rate(&self) -> u32 {
        self.core.in_rate()
    }

    #[getter]
    fn out_rate(&self) -> u32 {
        self.core.out_rate()
    }

    /// Group delay in milliseconds: the lag this resampler adds to a live stream.
    #[getter]
    fn delay_ms(&self) -> f64 {
        self.core.delay_seconds() * 1000.0
    }

    #[getter]
    fn taps_per_output(&self) -> usize {
        self.core.taps_per_output()
    }

    fn __repr__(&self) -> String {
        format!("Resampler({}, {}, delay_ms={:.3})", self.core.in_rate(), self.core.out_rate(), self.delay_ms())
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Resampler>()
}
