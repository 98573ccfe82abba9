//! Bitmaps of the bytes that structure a SIP head — `LF` and `:` — built 64 bytes at a
//! time, so that the header index finds line ends and colons with a bit scan instead of a
//! search per line.
//!
//! On x86_64 a 64-byte block's bitmap for one byte costs four SSE2 loads, compares and
//! `movemask`s (SSE2 is part of the x86_64 baseline, so no runtime detection is needed);
//! elsewhere a portable loop builds the same bitmap. Bitmaps are computed lazily as the index
//! asks for positions further into the buffer, and never past [`SIP_HEAD_BYTES_MAX`] (plus one
//! block).

use crate::limits::SIP_HEAD_BYTES_MAX;

const BLOCK: usize = 64;
const BLOCKS_MAX: usize = SIP_HEAD_BYTES_MAX / BLOCK + 1;

/// The bitmap of one class of byte over one block, remembered while searches stay in it.
#[derive(Clone, Copy)]
struct Cursor {
    block: usize,
    bits: u64,
}

/// Scans one buffer's head. Each class has its own cursor because the header index searches
/// each of them forward only (line ends, then colons and NULs inside the current line), so a
/// block's bitmap is computed once per class and nothing else is stored.
pub struct HeadScanner<'a> {
    buf: &'a [u8],
    lf: Cursor,
    colon: Cursor,
}

#[derive(Clone, Copy)]
enum Class {
    Lf = b'\n' as isize,
    Colon = b':' as isize,
}

impl<'a> HeadScanner<'a> {
    pub fn new(buf: &'a [u8]) -> HeadScanner<'a> {
        let none = Cursor {
            block: usize::MAX,
            bits: 0,
        };
        HeadScanner {
            buf,
            lf: none,
            colon: none,
        }
    }

    /// First position in `[from, to)` of a byte of `class`.
    #[inline(always)]
    fn find(&mut self, class: Class, from: usize, to: usize) -> Option<usize> {
        let buf = self.buf;
        let cursor = match class {
            Class::Lf => &mut self.lf,
            Class::Colon => &mut self.colon,
        };
        let mut block = from / BLOCK;
        let mut skip = from % BLOCK;
        while block * BLOCK < to && block < BLOCKS_MAX {
            if cursor.block != block {
                let start = block * BLOCK;
                if start >= buf.len() {
                    return None;
                }
                cursor.block = block;
                cursor.bits = bitmap(&buf[start..], class as u8);
            }
            let bits = cursor.bits & (u64::MAX << skip);
            if bits != 0 {
                let at = block * BLOCK + bits.trailing_zeros() as usize;
                return (at < to).then_some(at);
            }
            block += 1;
            skip = 0;
        }
        None
    }

    /// The next `LF` at or after `from`.
    #[inline]
    pub fn next_lf(&mut self, from: usize) -> Option<usize> {
        self.find(Class::Lf, from, usize::MAX)
    }

    /// The first `:` in `[from, to)`.
    #[inline]
    pub fn first_colon(&mut self, from: usize, to: usize) -> Option<usize> {
        self.find(Class::Colon, from, to)
    }
}

/// The bitmap of `byte` over the first 64 bytes of `data` (fewer at the end of the buffer).
#[inline(always)]
fn bitmap(data: &[u8], byte: u8) -> u64 {
    match data.get(..BLOCK) {
        Some(full) => {
            let mut chunk = [0u8; BLOCK];
            chunk.copy_from_slice(full);
            block_bitmap(&chunk, byte)
        }
        None => {
            // The last, short block: pad with a byte that matches no class searched for.
            let mut chunk = [0xffu8; BLOCK];
            chunk[..data.len()].copy_from_slice(data);
            block_bitmap(&chunk, byte)
        }
    }
}

/// Bit `i` set where `chunk[i] == byte`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn block_bitmap(chunk: &[u8; BLOCK], byte: u8) -> u64 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
    };
    let mut bits = 0u64;
    for i in 0..BLOCK / 16 {
        // SAFETY: SSE2 is part of the x86_64 baseline. The load reads 16 bytes at offset
        // 16 * i < 64 of `chunk`, inside the array; `loadu` has no alignment requirement.
        let m = unsafe {
            let v = _mm_loadu_si128(chunk.as_ptr().add(i * 16).cast::<__m128i>());
            _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(byte as i8)))
        };
        bits |= u64::from(m as u16) << (i * 16);
    }
    bits
}

/// Portable version of the bitmap.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn block_bitmap(chunk: &[u8; BLOCK], byte: u8) -> u64 {
    block_bitmap_portable(chunk, byte)
}

#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn block_bitmap_portable(chunk: &[u8; BLOCK], byte: u8) -> u64 {
    let mut bits = 0u64;
    for (i, &b) in chunk.iter().enumerate() {
        bits |= u64::from(b == byte) << i;
    }
    bits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(buf: &[u8], byte: u8, from: usize, to: usize) -> Option<usize> {
        let to = to.min(buf.len());
        (from..to).find(|&i| buf[i] == byte)
    }

    #[test]
    fn bitmaps_agree_with_the_portable_loop() {
        let mut chunk = [0u8; BLOCK];
        for (i, b) in chunk.iter_mut().enumerate() {
            *b = [b'\n', b':', 0, b'x', 0xff][i % 5];
        }
        for byte in [b'\n', b':', 0, b'x', 0xff, b'q'] {
            assert_eq!(
                block_bitmap(&chunk, byte),
                block_bitmap_portable(&chunk, byte)
            );
        }
    }

    #[test]
    fn finds_match_a_naive_search_across_blocks_and_tails() {
        for len in [0usize, 1, 63, 64, 65, 127, 128, 200] {
            let buf: Vec<u8> = (0..len)
                .map(|i| [b'a', b'\n', b':', 0, b'b', b'c', b'd'][(i * 7 + i / 3) % 7])
                .collect();
            for from in 0..=len {
                let mut s = HeadScanner::new(&buf);
                assert_eq!(
                    s.next_lf(from),
                    naive(&buf, b'\n', from, usize::MAX),
                    "len {len} from {from}"
                );
                for to in from..=len {
                    let mut s = HeadScanner::new(&buf);
                    assert_eq!(s.first_colon(from, to), naive(&buf, b':', from, to));
                }
            }
        }
    }

    #[test]
    fn nothing_is_scanned_past_the_head_limit() {
        let mut buf = vec![b'a'; SIP_HEAD_BYTES_MAX + 3 * BLOCK];
        let last = buf.len() - 1;
        buf[last] = b'\n';
        let mut s = HeadScanner::new(&buf);
        assert_eq!(s.next_lf(0), None);
        let mut near = vec![b'a'; SIP_HEAD_BYTES_MAX + 10];
        near[SIP_HEAD_BYTES_MAX + 5] = b'\n';
        assert_eq!(
            HeadScanner::new(&near).next_lf(0),
            Some(SIP_HEAD_BYTES_MAX + 5)
        );
    }
}
