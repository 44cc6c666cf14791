//! Turning Python arguments into Rust slices with clear errors instead of panics.

use numpy::{PyArray1, PyReadonlyArray1, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView, PyString};

/// Work below this many samples is cheaper than releasing and re-taking the GIL.
pub const DETACH_THRESHOLD: usize = 16_384;

fn describe(obj: &Bound<'_, PyAny>) -> String {
    if let Ok(arr) = obj.cast::<numpy::PyUntypedArray>() {
        format!("array of dtype {} with {} dimension(s)", arr.dtype(), arr.ndim())
    } else {
        obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "object".into())
    }
}

/// Binary input only (bytes, bytearray, memoryview, uint8 array): G.711 codes are not text, and
/// a str here is almost always a base64 payload passed by mistake.
pub fn binary(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if obj.cast::<PyString>().is_ok() {
        return Err(PyTypeError::new_err("expected bytes-like G.711 data, got str (decode base64 first)"));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(b.to_vec());
    }
    if let Ok(v) = obj.extract::<PyReadonlyArray1<u8>>() {
        if let Ok(s) = v.as_slice() {
            return Ok(s.to_vec());
        }
    }
    if obj.is_instance_of::<PyMemoryView>() {
        let copied = obj.py().get_type::<PyBytes>().call1((obj,))?;
        return Ok(copied.cast::<PyBytes>()?.as_bytes().to_vec());
    }
    Err(PyTypeError::new_err(format!("expected bytes-like G.711 data, got {}", describe(obj))))
}

/// A 1-D C-contiguous int16 array, copied out so the GIL can be released while it is used.
pub fn pcm_i16(obj: &Bound<'_, PyAny>) -> PyResult<Vec<i16>> {
    let arr: PyReadonlyArray1<i16> = obj.extract().map_err(|_| {
        PyTypeError::new_err(format!("expected a 1-D numpy int16 array, got {}", describe(obj)))
    })?;
    Ok(arr
        .as_slice()
        .map_err(|_| PyValueError::new_err("int16 array must be C-contiguous (use numpy.ascontiguousarray)"))?
        .to_vec())
}

/// PCM as int16, or float32 in [-1, 1] (scaled to the int16 range); NaN and inf are refused.
pub enum Pcm {
    I16(Vec<i16>),
    F32(Vec<f32>),
}

pub fn pcm_any(obj: &Bound<'_, PyAny>) -> PyResult<Pcm> {
    if let Ok(arr) = obj.extract::<PyReadonlyArray1<i16>>() {
        let s = arr
            .as_slice()
            .map_err(|_| PyValueError::new_err("int16 array must be C-contiguous (use numpy.ascontiguousarray)"))?;
        return Ok(Pcm::I16(s.to_vec()));
    }
    if let Ok(arr) = obj.extract::<PyReadonlyArray1<f32>>() {
        let s = arr
            .as_slice()
            .map_err(|_| PyValueError::new_err("float32 array must be C-contiguous (use numpy.ascontiguousarray)"))?;
        if s.iter().any(|v| !v.is_finite()) {
            return Err(PyValueError::new_err("float32 audio contains NaN or infinity"));
        }
        return Ok(Pcm::F32(s.iter().map(|v| v * 32768.0).collect()));
    }
    Err(PyTypeError::new_err(format!(
        "expected a 1-D numpy int16 or float32 array, got {}",
        describe(obj)
    )))
}

/// Bytes-like input: bytes, bytearray or str (ASCII, as in base64 text or JSON).
pub fn bytes_like(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if let Ok(s) = obj.cast::<PyString>() {
        let text = s.to_str().map_err(|_| super::MediaError::new_err("message text is not valid UTF-8"))?;
        return Ok(text.as_bytes().to_vec());
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(b.to_vec());
    }
    if let Ok(v) = obj.extract::<PyReadonlyArray1<u8>>() {
        if let Ok(s) = v.as_slice() {
            return Ok(s.to_vec());
        }
    }
    Err(PyTypeError::new_err(format!("expected bytes, bytearray or str, got {}", describe(obj))))
}

pub fn i16_array(py: Python<'_>, v: Vec<i16>) -> Bound<'_, PyArray1<i16>> {
    PyArray1::from_vec(py, v)
}
