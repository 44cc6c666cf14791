//! The jitter buffer binding: argument checking and conversion only.

use numpy::PyArray1;
use pyo3::exceptions::{PyOverflowError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::arrays::{i16_array, pcm_i16};
use super::to_py_err;
use crate::jitter::{JitterBuffer as Core, JitterConfig, JitterStats as CoreStats};
use crate::MediaError as CoreError;

/// A snapshot of the jitter buffer's counters (see `JitterBuffer.stats`).
#[pyclass(module = "media_core._native", frozen, get_all)]
#[derive(Clone)]
pub struct JitterStats {
    packets_received: u64,
    packets_played: u64,
    packets_late: u64,
    packets_duplicate: u64,
    packets_lost: u64,
    packets_discarded: u64,
    frames_normal: u64,
    frames_concealed: u64,
    frames_silence: u64,
    frames_inserted: u64,
    frames_dropped: u64,
    concealed_samples: u64,
    resets: u64,
    mean_delay_ms: f64,
    p95_delay_ms: f64,
    target_delay_ms: f64,
    current_delay_ms: f64,
    jitter_ms: f64,
}

impl From<CoreStats> for JitterStats {
    fn from(s: CoreStats) -> Self {
        Self {
            packets_received: s.packets_received,
            packets_played: s.packets_played,
            packets_late: s.packets_late,
            packets_duplicate: s.packets_duplicate,
            packets_lost: s.packets_lost,
            packets_discarded: s.packets_discarded,
            frames_normal: s.frames_normal,
            frames_concealed: s.frames_concealed,
            frames_silence: s.frames_silence,
            frames_inserted: s.frames_inserted,
            frames_dropped: s.frames_dropped,
            concealed_samples: s.concealed_samples,
            resets: s.resets,
            mean_delay_ms: s.mean_delay_ms,
            p95_delay_ms: s.p95_delay_ms,
            target_delay_ms: s.target_delay_ms,
            current_delay_ms: s.current_delay_ms,
            jitter_ms: s.jitter_ms,
        }
    }
}

#[pymethods]
impl JitterStats {
    /// The same figures as a plain dict.
    fn as_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        let counts = [
            ("packets_received", self.packets_received),
            ("packets_played", self.packets_played),
            ("packets_late", self.packets_late),
            ("packets_duplicate", self.packets_duplicate),
            ("packets_lost", self.packets_lost),
            ("packets_discarded", self.packets_discarded),
            ("frames_normal", self.frames_normal),
            ("frames_concealed", self.frames_concealed),
            ("frames_silence", self.frames_silence),
            ("frames_inserted", self.frames_inserted),
            ("frames_dropped", self.frames_dropped),
            ("concealed_samples", self.concealed_samples),
            ("resets", self.resets),
        ];
        for (k, v) in counts {
            d.set_item(k, v)?;
        }
        let times = [
            ("mean_delay_ms", self.mean_delay_ms),
            ("p95_delay_ms", self.p95_delay_ms),
            ("target_delay_ms", self.target_delay_ms),
            ("current_delay_ms", self.current_delay_ms),
            ("jitter_ms", self.jitter_ms),
        ];
        for (k, v) in times {
            d.set_item(k, v)?;
        }
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "JitterStats(received={}, played={}, late={}, lost={}, duplicate={}, concealed_samples={}, \
             mean_delay_ms={:.1}, p95_delay_ms={:.1}, target_delay_ms={:.1})",
            self.packets_received,
            self.packets_played,
            self.packets_late,
            self.packets_lost,
            self.packets_duplicate,
            self.concealed_samples,
            self.mean_delay_ms,
            self.p95_delay_ms,
            self.target_delay_ms
        )
    }
}

/// An integer argument in `0..=max`: TypeError for a non-integer, MediaError when out of range.
fn ranged_int(obj: &Bound<'_, PyAny>, name: &str, max: u64) -> PyResult<u64> {
    let out_of_range = || to_py_err(CoreError::InvalidParameter(format!("{name} must lie in 0..={max}")));
    match obj.extract::<i64>() {
        Ok(v) if (0..=max as i64).contains(&v) => Ok(v as u64),
        Ok(_) => Err(out_of_range()),
        Err(e) if e.is_instance_of::<PyOverflowError>(obj.py()) => Err(out_of_range()),
        Err(_) => Err(PyTypeError::new_err(format!(
            "{name} must be an int, got {}",
            obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "object".into())
        ))),
    }
}

/// Adaptive jitter buffer for one RTP-style stream; the caller supplies the clock.
#[pyclass(module = "media_core._native")]
pub struct JitterBuffer {
    core: Core,
}

#[pymethods]
impl JitterBuffer {
    #[new]
    #[pyo3(signature = (sample_rate=8000, frame_ms=20, min_delay_ms=20.0, max_delay_ms=200.0, initial_delay_ms=40.0))]
    fn new(
        sample_rate: i64,
        frame_ms: i64,
        min_delay_ms: f64,
        max_delay_ms: f64,
        initial_delay_ms: f64,
    ) -> PyResult<Self> {
        let positive = |v: i64, name: &str| {
            u32::try_from(v).map_err(|_| to_py_err(CoreError::InvalidParameter(format!("{name} out of range: {v}"))))
        };
        let (sample_rate, frame_ms) = (positive(sample_rate, "sample_rate")?, positive(frame_ms, "frame_ms")?);
        let cfg = JitterConfig { sample_rate, frame_ms, min_delay_ms, max_delay_ms, initial_delay_ms };
        Ok(Self { core: Core::new(cfg).map_err(to_py_err)? })
    }

    /// Offer one packet; returns "ok", "duplicate", "late", "held" or "reset".
    fn push(
        &mut self,
        seq: &Bound<'_, PyAny>,
        timestamp: &Bound<'_, PyAny>,
        payload: &Bound<'_, PyAny>,
        arrival_ms: f64,
    ) -> PyResult<&'static str> {
        let seq = ranged_int(seq, "seq", u16::MAX as u64)? as u16;
        let ts = ranged_int(timestamp, "timestamp", u32::MAX as u64)? as u32;
        let pcm = pcm_i16(payload)?;
        Ok(self.core.push(seq, ts, &pcm, arrival_ms).map_err(to_py_err)?.as_str())
    }

    /// The next frame at `now_ms`: (int16 array of one frame, "normal" | "concealed" | "silence").
    fn pop<'py>(&mut self, py: Python<'py>, now_ms: f64) -> PyResult<(Bound<'py, PyArray1<i16>>, &'static str)> {
        let frame = self.core.pop(now_ms).map_err(to_py_err)?;
        Ok((i16_array(py, frame.pcm), frame.kind.as_str()))
    }

    fn stats(&self) -> JitterStats {
        self.core.stats().into()
    }

    /// Forget the stream and the statistics; the configuration is kept.
    fn reset(&mut self) {
        self.core.reset();
    }

    fn __len__(&self) -> usize {
        self.core.len()
    }

    #[getter]
    fn sample_rate(&self) -> u32 {
        self.core.config().sample_rate
    }

    #[getter]
    fn frame_ms(&self) -> u32 {
        self.core.config().frame_ms
    }

    #[getter]
    fn frame_samples(&self) -> usize {
        self.core.config().frame_samples()
    }

    #[getter]
    fn min_delay_ms(&self) -> f64 {
        self.core.config().min_delay_ms
    }

    #[getter]
    fn max_delay_ms(&self) -> f64 {
        self.core.config().max_delay_ms
    }

    #[getter]
    fn target_delay_ms(&self) -> f64 {
        self.core.target_delay_ms()
    }

    fn __repr__(&self) -> String {
        let c = self.core.config();
        format!(
            "JitterBuffer(sample_rate={}, frame_ms={}, min_delay_ms={}, max_delay_ms={}, buffered={})",
            c.sample_rate,
            c.frame_ms,
            c.min_delay_ms,
            c.max_delay_ms,
            self.core.len()
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<JitterStats>()?;
    m.add_class::<JitterBuffer>()
}
