//! G.711 mu-law and A-law (ITU-T G.711), bit-exact with the classic reference coder that
//! CPython's `audioop` also implements: mu-law encodes the top 14 bits, A-law the top 13.
//!
//! Encoding goes through tables indexed by the truncated sample (16 KiB and 8 KiB), built at
//! compile time, so the per-sample cost is one shift and one load.

const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 8159;
const SEG_UEND: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
const SEG_AEND: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];

/// mu-law byte for silence (positive zero).
pub const ULAW_SILENCE: u8 = 0xFF;
/// A-law byte for silence (positive zero).
pub const ALAW_SILENCE: u8 = 0xD5;

const fn segment(value: i32, ends: &[i32; 8]) -> usize {
    let mut i = 0;
    while i < 8 {
        if value <= ends[i] {
            return i;
        }
        i += 1;
    }
    8
}

/// Encodes one 14-bit two's-complement sample to mu-law.
const fn ulaw_from_14bit(sample: i32) -> u8 {
    let (mut magnitude, mask) = if sample < 0 { (-sample, 0x7F) } else { (sample, 0xFF) };
    if magnitude > ULAW_CLIP {
        magnitude = ULAW_CLIP;
    }
    magnitude += ULAW_BIAS >> 2;
    let seg = segment(magnitude, &SEG_UEND);
    if seg >= 8 {
        return (0x7F ^ mask) as u8;
    }
    let code = ((seg as i32) << 4) | ((magnitude >> (seg + 1)) & 0xF);
    (code ^ mask) as u8
}

/// Encodes one 13-bit two's-complement sample to A-law.
const fn alaw_from_13bit(sample: i32) -> u8 {
    let (magnitude, mask) = if sample >= 0 { (sample, 0xD5) } else { (-sample - 1, 0x55) };
    let seg = segment(magnitude, &SEG_AEND);
    if seg >= 8 {
        return (0x7F ^ mask) as u8;
    }
    let quant = if seg < 2 { (magnitude >> 1) & 0xF } else { (magnitude >> seg) & 0xF };
    (((seg as i32) << 4 | quant) ^ mask) as u8
}

const fn ulaw_to_linear(code: u8) -> i16 {
    let u = !code as i32 & 0xFF;
    let t = (((u & 0x0F) << 3) + ULAW_BIAS) << ((u & 0x70) >> 4);
    if u & 0x80 != 0 {
        (ULAW_BIAS - t) as i16
    } else {
        (t - ULAW_BIAS) as i16
    }
}

const fn alaw_to_linear(code: u8) -> i16 {
    let a = (code ^ 0x55) as i32;
    let seg = (a & 0x70) >> 4;
    let mut t = (a & 0x0F) << 4;
    t += if seg == 0 { 8 } else { 0x108 };
    if seg > 1 {
        t <<= seg - 1;
    }
    if a & 0x80 != 0 {
        t as i16
    } else {
        -t as i16
    }
}

const ULAW_ENCODE: [u8; 1 << 14] = {
    let mut table = [0u8; 1 << 14];
    let mut i = 0;
    while i < (1 << 14) {
        table[i] = ulaw_from_14bit(i as i32 - (1 << 13));
        i += 1;
    }
    table
};

const ALAW_ENCODE: [u8; 1 << 13] = {
    let mut table = [0u8; 1 << 13];
    let mut i = 0;
    while i < (1 << 13) {
        table[i] = alaw_from_13bit(i as i32 - (1 << 12));
        i += 1;
    }
    table
};

const ULAW_DECODE: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = ulaw_to_linear(i as u8);
        i += 1;
    }
    table
};

const ALAW_DECODE: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = alaw_to_linear(i as u8);
        i += 1;
    }
    table
};

#[inline]
pub fn ulaw_encode_sample(sample: i16) -> u8 {
    ULAW_ENCODE[((sample >> 2) as i32 + (1 << 13)) as usize]
}

#[inline]
pub fn alaw_encode_sample(sample: i16) -> u8 {
    ALAW_ENCODE[((sample >> 3) as i32 + (1 << 12)) as usize]
}

#[inline]
pub fn ulaw_decode_sample(code: u8) -> i16 {
    ULAW_DECODE[code as usize]
}

#[inline]
pub fn alaw_decode_sample(code: u8) -> i16 {
    ALAW_DECODE[code as usize]
}

pub fn ulaw_encode_into(pcm: &[i16], out: &mut Vec<u8>) {
    out.extend(pcm.iter().map(|&s| ulaw_encode_sample(s)));
}

pub fn alaw_encode_into(pcm: &[i16], out: &mut Vec<u8>) {
    out.extend(pcm.iter().map(|&s| alaw_encode_sample(s)));
}

pub fn ulaw_decode_into(codes: &[u8], out: &mut Vec<i16>) {
    out.extend(codes.iter().map(|&c| ulaw_decode_sample(c)));
}

pub fn alaw_decode_into(codes: &[u8], out: &mut Vec<i16>) {
    out.extend(codes.iter().map(|&c| alaw_decode_sample(c)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_values() {
        assert_eq!(ulaw_encode_sample(0), 0xFF);
        assert_eq!(ulaw_decode_sample(0xFF), 0);
        assert_eq!(ulaw_decode_sample(0x00), -32124);
        assert_eq!(ulaw_decode_sample(0x80), 32124);
        assert_eq!(alaw_encode_sample(0), 0xD5);
        assert_eq!(alaw_decode_sample(0xD5), 8);
        assert_eq!(alaw_decode_sample(0x2A), -32256);
        assert_eq!(alaw_decode_sample(0xAA), 32256);
    }

    #[test]
    fn every_code_round_trips() {
        // Decoding a code and encoding the result must give the code back (except mu-law's
        // negative zero, which decodes to 0 like positive zero).
        for code in 0..=255u8 {
            let u = ulaw_encode_sample(ulaw_decode_sample(code));
            assert!(u == code || (code == 0x7F && u == 0xFF), "ulaw {code:#x} -> {u:#x}");
            assert_eq!(alaw_encode_sample(alaw_decode_sample(code)), code, "alaw {code:#x}");
        }
    }

    proptest! {
        #[test]
        fn quantisation_error_is_bounded(sample in any::<i16>()) {
            // G.711 step size grows with the segment; the error stays within half a step
            // (plus the clip at full scale for mu-law).
            let u = ulaw_decode_sample(ulaw_encode_sample(sample)) as i32;
            let a = alaw_decode_sample(alaw_encode_sample(sample)) as i32;
            let s = sample as i32;
            let step = |v: i32| (v.abs() / 16).max(16);
            prop_assert!((u - s).abs() <= step(s).max(700), "ulaw {} -> {}", s, u);
            prop_assert!((a - s).abs() <= step(s).max(16), "alaw {} -> {}", s, a);
        }

        #[test]
        fn encoding_is_monotonic(a in any::<i16>(), b in any::<i16>()) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(ulaw_decode_sample(ulaw_encode_sample(lo)) <= ulaw_decode_sample(ulaw_encode_sample(hi)));
            prop_assert!(alaw_decode_sample(alaw_encode_sample(lo)) <= alaw_decode_sample(alaw_encode_sample(hi)));
        }
    }
}
