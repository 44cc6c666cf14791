//! PyO3 binding layer: argument checking, conversion and error mapping only. All audio work
//! lives in the pure Rust modules.

mod arrays;
mod g711;
mod jitter;
mod neural_vad;
mod resample;
mod telephony;
mod vad;

use pyo3::prelude::*;

pyo3::create_exception!(
    media_core,
    MediaError,
    pyo3::exceptions::PyValueError,
    "Invalid audio, parameter or carrier message given to media_core."
);

pub(crate) fn to_py_err(e: crate::MediaError) -> PyErr {
    MediaError::new_err(e.to_string())
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("MediaError", m.py().get_type::<MediaError>())?;
    g711::register(m)?;
    resample::register(m)?;
    vad::register(m)?;
    neural_vad::register(m)?;
    jitter::register(m)?;
    telephony::register(m)?;
    Ok(())
}
