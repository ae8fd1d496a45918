//! Bounds-checked reads of native-endian integers and NUL-terminated strings.

/// Reads `N` bytes at `off`, or `None` past the end (and on offset overflow).
pub(crate) fn array_at<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    b.get(off..off.checked_add(N)?)?.try_into().ok()
}

pub(crate) fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    array_at(b, off).map(u32::from_ne_bytes)
}

pub(crate) fn i32_at(b: &[u8], off: usize) -> Option<i32> {
    array_at(b, off).map(i32::from_ne_bytes)
}

pub(crate) fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    array_at(b, off).map(u64::from_ne_bytes)
}

/// Why [`cstr_at`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CStrError {
    OutOfRange,
    MissingNul,
}

/// The NUL-terminated string starting at `off`, without its NUL.
pub(crate) fn cstr_at(b: &[u8], off: usize) -> Result<&[u8], CStrError> {
    let tail = b.get(off..).ok_or(CStrError::OutOfRange)?;
    if tail.is_empty() {
        return Err(CStrError::OutOfRange);
    }
    let end = nul_position(tail).ok_or(CStrError::MissingNul)?;
    tail.get(..end).ok_or(CStrError::MissingNul)
}

/// Index of the first NUL byte, eight bytes at a time (cache strings are short, so this beats
/// a call into a general `memchr`).
pub(crate) fn nul_position(b: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut words = b.chunks_exact(8);
    let mut at = 0;
    for word in words.by_ref() {
        let v = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
        // The lowest set high bit marks the first zero byte (borrows only run upwards).
        let zero = v.wrapping_sub(LO) & !v & HI;
        if zero != 0 {
            return Some(at + (zero.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&c| c == 0)
        .map(|i| at + i)
}

/// `x` rounded up to a multiple of `align` (a power of two), `None` on overflow.
pub(crate) fn align_up(x: usize, align: usize) -> Option<usize> {
    debug_assert!(align.is_power_of_two());
    Some(x.checked_add(align - 1)? & !(align - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stop_at_the_end() {
        let b = [1u8, 0, 0, 0, 2];
        assert_eq!(u32_at(&b, 0), Some(u32::from_ne_bytes([1, 0, 0, 0])));
        assert_eq!(u32_at(&b, 2), None);
        assert_eq!(u32_at(&b, usize::MAX - 1), None);
        assert_eq!(u64_at(&b, 0), None);
    }

    #[test]
    fn cstr_needs_a_nul_inside_the_input() {
        assert_eq!(cstr_at(b"ab\0cd", 0), Ok(&b"ab"[..]));
        assert_eq!(cstr_at(b"ab\0cd", 2), Ok(&b""[..]));
        assert_eq!(cstr_at(b"ab\0cd", 3), Err(CStrError::MissingNul));
        assert_eq!(cstr_at(b"ab\0cd", 5), Err(CStrError::OutOfRange));
        assert_eq!(cstr_at(b"ab\0cd", 99), Err(CStrError::OutOfRange));
    }

    #[test]
    fn nul_position_finds_the_first_nul_at_any_offset() {
        for len in 0..40u8 {
            for nul in 0..=len {
                let mut b: Vec<u8> = (0..len).map(|i| 0x80 | i).collect();
                let (len, nul) = (usize::from(len), usize::from(nul));
                if nul < len {
                    b[nul] = 0;
                    if nul + 1 < len {
                        b[nul + 1] = 0;
                    }
                    assert_eq!(nul_position(&b), Some(nul), "len {len} nul {nul}");
                } else {
                    assert_eq!(nul_position(&b), None, "len {len}");
                }
            }
        }
        // 0x01 right after a zero byte must not hide it (borrow propagation).
        assert_eq!(nul_position(&[1, 0, 1, 1, 1, 1, 1, 1]), Some(1));
        assert_eq!(
            nul_position(&[0x80, 0x01, 0x00, 0x01, 1, 1, 1, 1, 1]),
            Some(2)
        );
    }

    #[test]
    fn align_up_rounds_and_detects_overflow() {
        assert_eq!(align_up(17, 8), Some(24));
        assert_eq!(align_up(24, 8), Some(24));
        assert_eq!(align_up(usize::MAX, 8), None);
    }
}
