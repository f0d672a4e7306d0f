//! Streaming line counting: constant memory, stops early at a cap.
//!
//! Lines are counted by `\n` (so CRLF counts once); a last line without a
//! newline still counts, and is flagged. UTF-8 is checked on the way, across
//! chunk boundaries, so an object with stray bytes is reported unreadable.
//! Validation uses SIMD (simdutf8): with std's validator, Japanese text
//! counted at under 1 GB/s a core (see docs/BENCHMARKS.md). Each chunk is
//! counted and validated block by block while the block is in the L1 cache.

use tokio::io::{AsyncRead, AsyncReadExt};

const CHUNK: usize = 256 * 1024;

/// What counting an object found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LineCount {
    pub lines: u64,
    pub bytes: u64,
    /// Counting stopped at the cap; `lines` equals the cap.
    pub capped: bool,
    pub utf8_valid: bool,
    /// The last line has no terminating newline.
    pub unterminated: bool,
}

/// Incremental counter, fed chunk by chunk.
#[derive(Debug)]
pub struct LineCounter {
    cap: Option<u64>,
    lines: u64,
    bytes: u64,
    last_byte: Option<u8>,
    utf8_valid: bool,
    /// The start of a UTF-8 sequence cut by a chunk boundary (at most 3 bytes).
    carry: Vec<u8>,
}

/// Chunks are counted in blocks this small, so that the newline count and the
/// UTF-8 check read the block from the L1 cache: one trip through memory per
/// byte instead of two.
const BLOCK: usize = 16 * 1024;

impl LineCounter {
    pub fn new(cap: Option<u64>) -> Self {
        LineCounter {
            cap,
            lines: 0,
            bytes: 0,
            last_byte: None,
            utf8_valid: true,
            carry: Vec::with_capacity(4),
        }
    }

    /// Counts a chunk; returns false once the cap is reached (stop reading).
    pub fn feed(&mut self, chunk: &[u8]) -> bool {
        for block in chunk.chunks(BLOCK) {
            // Each byte is scanned once for newlines: the cap's position is only
            // looked for in the one block that reaches it.
            let newlines = memchr::memchr_iter(b'\n', block).count() as u64;
            if let Some(cap) = self.cap
                && self.lines + newlines >= cap
            {
                let room = cap.saturating_sub(self.lines) as usize;
                let end = match room.checked_sub(1) {
                    Some(nth) => memchr::memchr_iter(b'\n', block)
                        .nth(nth)
                        .map_or(block.len(), |p| p + 1),
                    None => 0,
                };
                self.lines = cap;
                self.account(&block[..end]);
                return false;
            }
            self.lines += newlines;
            self.account(block);
        }
        true
    }

    fn account(&mut self, block: &[u8]) {
        let Some(&last) = block.last() else {
            return;
        };
        self.bytes += block.len() as u64;
        self.last_byte = Some(last);
        if self.utf8_valid {
            self.check_utf8(block);
        }
    }

    fn check_utf8(&mut self, mut block: &[u8]) {
        if !self.carry.is_empty() {
            // Complete the sequence cut at the previous boundary.
            let needed = utf8_len(self.carry[0]).saturating_sub(self.carry.len());
            let take = needed.min(block.len());
            self.carry.extend_from_slice(&block[..take]);
            block = &block[take..];
            if self.carry.len() < utf8_len(self.carry[0]) {
                return;
            }
            if simdutf8::basic::from_utf8(&self.carry).is_err() {
                self.utf8_valid = false;
                return;
            }
            self.carry.clear();
        }
        // A sequence cut by the end of the block waits for the next one; the rest is
        // checked with the fast validator, which only says valid or not.
        let (whole, cut) = block.split_at(block.len() - incomplete_tail(block));
        if simdutf8::basic::from_utf8(whole).is_err() {
            self.utf8_valid = false;
            return;
        }
        self.carry.extend_from_slice(cut);
    }

    pub fn finish(self) -> LineCount {
        let capped = self.cap.is_some_and(|cap| self.lines >= cap);
        let unterminated = !capped && self.last_byte.is_some_and(|b| b != b'\n');
        LineCount {
            lines: self.lines + u64::from(unterminated),
            bytes: self.bytes,
            capped,
            utf8_valid: self.utf8_valid && (capped || self.carry.is_empty()),
            unterminated,
        }
    }
}

/// How many bytes at the end of `block` start a UTF-8 sequence that the block
/// cuts off (0 to 3). Invalid bytes are left to the validator.
fn incomplete_tail(block: &[u8]) -> usize {
    for back in 1..=block.len().min(3) {
        let byte = block[block.len() - back];
        if byte & 0xC0 != 0x80 {
            // The last byte that is not a continuation byte: does its sequence fit?
            return if utf8_len(byte) > back { back } else { 0 };
        }
    }
    0
}

/// The length of a UTF-8 sequence from its first byte (1 for invalid bytes).
fn utf8_len(first: u8) -> usize {
    match first {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    }
}

/// Counts the lines of a stream, reading at most up to the cap.
pub async fn count_lines<R: AsyncRead + Unpin + ?Sized>(
    reader: &mut R,
    cap: Option<u64>,
) -> std::io::Result<LineCount> {
    let mut counter = LineCounter::new(cap);
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let n = reader.read(&mut buffer).await?;
        if n == 0 || !counter.feed(&buffer[..n]) {
            break;
        }
    }
    Ok(counter.finish())
}

/// The buffer of blocking reads from a file: small enough to stay in the L2
/// cache between the copy out of the page cache and the count.
const FILE_CHUNK: usize = 128 * 1024;

/// Counts the lines of a blocking reader (a local file), reading at most up to the cap.
pub fn count_reader(
    mut reader: impl std::io::Read,
    cap: Option<u64>,
) -> std::io::Result<LineCount> {
    let mut counter = LineCounter::new(cap);
    let mut buffer = vec![0u8; FILE_CHUNK];
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 || !counter.feed(&buffer[..n]) {
            break;
        }
    }
    Ok(counter.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count_in_chunks(data: &[u8], chunk: usize, cap: Option<u64>) -> LineCount {
        let mut counter = LineCounter::new(cap);
        for piece in data.chunks(chunk.max(1)) {
            if !counter.feed(piece) {
                break;
            }
        }
        counter.finish()
    }

    #[test]
    fn counts_lines_however_the_stream_is_cut() {
        let text = "{\"a\":1}\r\n{\"t\":\"日本語のテキスト\"}\n{\"b\":2}".as_bytes();
        for chunk in 1..text.len() + 1 {
            let c = count_in_chunks(text, chunk, None);
            assert_eq!(c.lines, 3, "chunk {chunk}");
            assert!(c.utf8_valid, "chunk {chunk}");
            assert!(c.unterminated);
            assert_eq!(c.bytes, text.len() as u64);
        }
    }

    #[test]
    fn flags_bad_utf8_and_empty_objects() {
        for chunk in 1..6 {
            let c = count_in_chunks(b"ok\n\xff\xfe\nok\n", chunk, None);
            assert_eq!((c.lines, c.utf8_valid, c.unterminated), (3, false, false));
            // A sequence cut off by the end of the object is invalid too.
            let c = count_in_chunks("x\n日".as_bytes().split_last().unwrap().1, chunk, None);
            assert!(!c.utf8_valid, "chunk {chunk}");
        }
        let empty = count_in_chunks(b"", 4, None);
        assert_eq!(
            (empty.lines, empty.utf8_valid, empty.unterminated),
            (0, true, false)
        );
    }

    /// Text of 1- to 4-byte characters long enough to cross several blocks.
    fn long_text() -> Vec<u8> {
        let pieces = ["{\"t\":\"", "日本語", "é", "🦀", "ascii", "\"}\n"];
        let mut out = Vec::new();
        let mut i = 0;
        while out.len() < 3 * BLOCK + 100 {
            out.extend_from_slice(pieces[i % pieces.len()].as_bytes());
            i += 1;
        }
        out
    }

    #[test]
    fn block_boundaries_inside_a_chunk_cut_no_character() {
        let text = long_text();
        let lines = text.iter().filter(|b| **b == b'\n').count() as u64;
        // Shift where the block boundaries fall by dropping leading bytes (at line starts).
        for skip in 0..8 {
            let data = &text[skip * 9..];
            let expected = data.iter().filter(|b| **b == b'\n').count() as u64;
            let valid = std::str::from_utf8(data).is_ok();
            for chunk in [data.len(), BLOCK + 1, BLOCK - 1, 4093, 7] {
                let c = count_in_chunks(data, chunk, None);
                assert_eq!(
                    c.lines,
                    expected + u64::from(c.unterminated),
                    "chunk {chunk}"
                );
                assert_eq!(c.utf8_valid, valid, "skip {skip} chunk {chunk}");
            }
        }
        assert!(lines > 100);
    }

    #[test]
    fn bad_bytes_anywhere_near_a_block_boundary_are_found() {
        let text = long_text();
        for at in (BLOCK - 6..BLOCK + 6).chain(2 * BLOCK - 3..2 * BLOCK + 3) {
            for bad in [0xffu8, 0x80, 0xc3] {
                let mut data = text.clone();
                data[at] = bad;
                let valid = std::str::from_utf8(&data).is_ok();
                for chunk in [data.len(), BLOCK, 1000, 3] {
                    let c = count_in_chunks(&data, chunk, None);
                    assert_eq!(c.utf8_valid, valid, "byte {bad:#x} at {at}, chunk {chunk}");
                }
            }
        }
    }

    #[test]
    fn the_cap_falls_in_a_later_block_of_a_large_chunk() {
        let text = long_text();
        let lines = text.iter().filter(|b| **b == b'\n').count() as u64;
        for cap in [1, lines / 2, lines - 1, lines] {
            let c = count_in_chunks(&text, text.len(), Some(cap));
            assert_eq!((c.lines, c.capped), (cap, true), "cap {cap}");
            let position = text
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .nth(cap as usize - 1)
                .unwrap()
                .0;
            assert_eq!(c.bytes, position as u64 + 1, "read up to the cap's newline");
        }
        let c = count_in_chunks(&text, text.len(), Some(lines + 1));
        assert_eq!(
            (c.lines, c.capped),
            (lines + u64::from(c.unterminated), false)
        );
    }

    #[test]
    fn blocking_readers_count_like_streams() {
        let text = long_text();
        let c = count_reader(&text[..], Some(5)).unwrap();
        assert_eq!((c.lines, c.capped), (5, true));
        let c = count_reader(&text[..], None).unwrap();
        assert_eq!(c, count_in_chunks(&text, 1000, None));
    }

    #[test]
    fn stops_at_the_cap() {
        let data = "line\n".repeat(50);
        for chunk in [1, 3, 7, 64, 1000] {
            let c = count_in_chunks(data.as_bytes(), chunk, Some(10));
            assert_eq!((c.lines, c.capped), (10, true), "chunk {chunk}");
            assert!(c.bytes <= 50 + chunk as u64, "read no further than needed");
        }
        let c = count_in_chunks(data.as_bytes(), 8, Some(50));
        assert_eq!((c.lines, c.capped), (50, true));
        let c = count_in_chunks(data.as_bytes(), 8, Some(51));
        assert_eq!((c.lines, c.capped), (50, false));
    }
}
