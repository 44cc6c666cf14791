//! Named f32 tensors read from the bytes of a weights file, in either of the two formats the
//! Silero VAD package ships: safetensors (a JSON header, then raw little-endian data) and ONNX
//! (protobuf; only the graph's initializers are read). Both are parsed by hand: the formats
//! are small, and a protobuf or ONNX runtime crate would dwarf the model itself.

use std::collections::HashMap;

use crate::error::MediaError;

#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

pub type Tensors = HashMap<String, Tensor>;

fn bad(msg: impl Into<String>) -> MediaError {
    MediaError::InvalidWeights(msg.into())
}

fn le_f32(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn checked_len(shape: &[usize]) -> Result<usize, MediaError> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or_else(|| bad("tensor shape overflows"))
}

/// safetensors: u64 header length, a JSON object {name: {dtype, shape, data_offsets}}, data.
pub fn parse_safetensors(bytes: &[u8]) -> Result<Tensors, MediaError> {
    #[derive(serde::Deserialize)]
    struct Entry {
        dtype: String,
        shape: Vec<usize>,
        data_offsets: [usize; 2],
    }
    let head: [u8; 8] = bytes.get(..8).and_then(|b| b.try_into().ok()).ok_or_else(|| bad("file shorter than a safetensors header"))?;
    let n = usize::try_from(u64::from_le_bytes(head)).map_err(|_| bad("safetensors header length overflows"))?;
    let json = bytes.get(8..8usize.saturating_add(n)).ok_or_else(|| bad("safetensors header runs past the end"))?;
    let data = &bytes[8 + n..];
    let raw: HashMap<String, serde_json::Value> =
        serde_json::from_slice(json).map_err(|e| bad(format!("safetensors header is not JSON: {e}")))?;
    let mut out = Tensors::new();
    for (name, value) in raw {
        if name == "__metadata__" {
            continue;
        }
        let e: Entry = serde_json::from_value(value).map_err(|e| bad(format!("tensor {name}: {e}")))?;
        if e.dtype != "F32" {
            return Err(bad(format!("tensor {name} has dtype {}, expected F32", e.dtype)));
        }
        let [a, b] = e.data_offsets;
        let len = checked_len(&e.shape)?;
        let slice = data.get(a..b).filter(|s| s.len() == len * 4);
        let slice = slice.ok_or_else(|| bad(format!("tensor {name}: data offsets do not match its shape")))?;
        out.insert(name, Tensor { shape: e.shape, data: le_f32(slice) });
    }
    Ok(out)
}

/// A protobuf field: its number and either a varint/fixed value or a length-delimited body.
enum Field<'a> {
    Int(u64),
    Bytes(&'a [u8]),
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, MediaError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or_else(|| bad("truncated protobuf varint"))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(bad("protobuf varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], MediaError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(|| bad("truncated protobuf field"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn next(&mut self) -> Result<Option<(u64, Field<'a>)>, MediaError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = match key & 7 {
            0 => Field::Int(self.varint()?),
            1 => Field::Int(u64::from_le_bytes(self.take(8)?.try_into().unwrap_or_default())),
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| bad("protobuf length overflows"))?;
                Field::Bytes(self.take(n)?)
            }
            5 => Field::Int(u64::from(u32::from_le_bytes(self.take(4)?.try_into().unwrap_or_default()))),
            w => return Err(bad(format!("unsupported protobuf wire type {w}"))),
        };
        Ok(Some((key >> 3, field)))
    }
}

/// One ONNX TensorProto: dims (1), data_type (2; 1 = FLOAT), float_data (4), name (8), raw_data (9).
fn onnx_tensor(body: &[u8]) -> Result<Option<(String, Tensor)>, MediaError> {
    let (mut dims, mut dtype, mut name, mut floats, mut raw) = (Vec::new(), 0u64, String::new(), Vec::new(), None);
    let mut r = Reader::new(body);
    while let Some((num, f)) = r.next()? {
        match (num, f) {
            (1, Field::Int(d)) => dims.push(d as usize),
            (1, Field::Bytes(packed)) => {
                let mut p = Reader::new(packed);
                while p.pos < packed.len() {
                    dims.push(p.varint()? as usize);
                }
            }
            (2, Field::Int(t)) => dtype = t,
            (4, Field::Bytes(packed)) => floats = le_f32(packed),
            (4, Field::Int(bits)) => floats.push(f32::from_bits(bits as u32)),
            (8, Field::Bytes(s)) => name = String::from_utf8_lossy(s).into_owned(),
            (9, Field::Bytes(s)) => raw = Some(s),
            _ => {}
        }
    }
    if dtype != 1 {
        return Ok(None); // not f32: shapes and indices of the graph, never weights of this model
    }
    let data = match raw {
        Some(s) => le_f32(s),
        None => floats,
    };
    if data.len() != checked_len(&dims)? {
        return Err(bad(format!("ONNX tensor {name}: {} values for shape {dims:?}", data.len())));
    }
    Ok(Some((name, Tensor { shape: dims, data })))
}

/// ONNX ModelProto: graph (7) -> GraphProto initializer (5). Tensors inside subgraphs are not
/// read: the 16 kHz single-rate export keeps every weight at the top level.
pub fn parse_onnx(bytes: &[u8]) -> Result<Tensors, MediaError> {
    let mut graph = None;
    let mut r = Reader::new(bytes);
    while let Some((num, f)) = r.next()? {
        if let (7, Field::Bytes(g)) = (num, f) {
            graph = Some(g);
        }
    }
    let graph = graph.ok_or_else(|| bad("no graph in the ONNX file"))?;
    let mut out = Tensors::new();
    let mut r = Reader::new(graph);
    while let Some((num, f)) = r.next()? {
        if let (5, Field::Bytes(t)) = (num, f) {
            if let Some((name, tensor)) = onnx_tensor(t)? {
                out.insert(name, tensor);
            }
        }
    }
    Ok(out)
}
