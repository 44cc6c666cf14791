use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::arrays::{binary, i16_array, pcm_i16};
use crate::g711;
use numpy::PyArray1;

/// Encodes int16 PCM to G.711 mu-law bytes (bit-exact with audioop.lin2ulaw).
#[pyfunction]
fn ulaw_encode<'py>(py: Python<'py>, pcm: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let pcm = pcm_i16(pcm)?;
    let mut out = Vec::with_capacity(pcm.len());
    g711::ulaw_encode_into(&pcm, &mut out);
    Ok(PyBytes::new(py, &out))
}

/// Encodes int16 PCM to G.711 A-law bytes (bit-exact with audioop.lin2alaw).
#[pyfunction]
fn alaw_encode<'py>(py: Python<'py>, pcm: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let pcm = pcm_i16(pcm)?;
    let mut out = Vec::with_capacity(pcm.len());
    g711::alaw_encode_into(&pcm, &mut out);
    Ok(PyBytes::new(py, &out))
}

/// Decodes G.711 mu-law bytes to int16 PCM.
#[pyfunction]
fn ulaw_decode<'py>(py: Python<'py>, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArray1<i16>>> {
    let data = binary(data)?;
    let mut out = Vec::with_capacity(data.len());
    g711::ulaw_decode_into(&data, &mut out);
    Ok(i16_array(py, out))
}

/// Decodes G.711 A-law bytes to int16 PCM.
#[pyfunction]
fn alaw_decode<'py>(py: Python<'py>, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArray1<i16>>> {
    let data = binary(data)?;
    let mut out = Vec::with_capacity(data.len());
    g711::alaw_decode_into(&data, &mut out);
    Ok(i16_array(py, out))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(ulaw_encode, m)?)?;
    m.add_function(wrap_pyfunction!(ulaw_decode, m)?)?;
    m.add_function(wrap_pyfunction!(alaw_encode, m)?)?;
    m.add_function(wrap_pyfunction!(alaw_decode, m)?)?;
    Ok(())
}
