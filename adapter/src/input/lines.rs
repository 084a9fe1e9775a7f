//! Splitting a byte stream into lines while keeping track of where each line starts and
//! ends in the stream, so a checkpoint can name the first byte not yet delivered.
//!
//! Lines are handed out as slices of the caller's read buffer; only a line that straddles
//! two reads is copied, and then at most `cap` bytes of it, so a runaway line without a
//! newline cannot grow memory without bound.

/// One complete line: its bytes (without the `\n`, possibly cut at the cap), the stream
/// offset of its first byte and the offset just past its newline.
pub struct Line<'a> {
    pub bytes: &'a [u8],
    pub start: u64,
    pub end: u64,
}

pub struct LineSplitter {
    cap: usize,
    pending: Vec<u8>,
    pending_active: bool,
    pending_start: u64,
    offset: u64,
}

impl LineSplitter {
    /// `cap` is the most bytes kept of one line (one more than the parser's limit, so the
    /// parser sees the line is too long); `offset` is the stream position of the next byte.
    pub fn new(cap: usize, offset: u64) -> Self {
        LineSplitter {
            cap: cap.max(1),
            pending: Vec::new(),
            pending_active: false,
            pending_start: offset,
            offset,
        }
    }

    /// The stream position of the first byte of the line not yet complete (or of the next
    /// byte when no line is in progress): everything before it has been handed out.
    pub fn safe_offset(&self) -> u64 {
        if self.pending_active {
            self.pending_start
        } else {
            self.offset
        }
    }

    /// The stream position of the next byte to feed.
    pub fn position(&self) -> u64 {
        self.offset
    }

    /// Whether an incomplete line is held.
    pub fn has_partial(&self) -> bool {
        self.pending_active
    }

    /// Splits `buf` (the next bytes of the stream) and calls `each` for every complete line.
    pub fn feed(&mut self, buf: &[u8], mut each: impl FnMut(Line<'_>)) {
        let base = self.offset;
        let mut start = 0;
        while let Some(pos) = memchr::memchr(b'\n', &buf[start..]) {
            let end = start + pos;
            if self.pending_active {
                let room = self.cap.saturating_sub(self.pending.len());
                self.pending
                    .extend_from_slice(&buf[start..end.min(start + room)]);
                each(Line {
                    bytes: &self.pending,
                    start: self.pending_start,
                    end: base + end as u64 + 1,
                });
                self.pending.clear();
                self.pending_active = false;
            } else {
                each(Line {
                    bytes: &buf[start..end],
                    start: base + start as u64,
                    end: base + end as u64 + 1,
                });
            }
            start = end + 1;
        }
        if start < buf.len() {
            if !self.pending_active {
                self.pending_active = true;
                self.pending_start = base + start as u64;
            }
            let room = self.cap.saturating_sub(self.pending.len());
            self.pending
                .extend_from_slice(&buf[start..buf.len().min(start + room)]);
        }
        self.offset = base + buf.len() as u64;
    }

    /// Hands out the incomplete last line, if any (end of input: a final line without a
    /// newline still counts).
    pub fn finish(&mut self, mut each: impl FnMut(Line<'_>)) {
        if self.pending_active {
            each(Line {
                bytes: &self.pending,
                start: self.pending_start,
                end: self.offset,
            });
            self.pending.clear();
            self.pending_active = false;
            if self.pending.capacity() > 64 * 1024 {
                self.pending = Vec::new();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]], cap: usize) -> (Vec<(Vec<u8>, u64, u64)>, u64) {
        let mut s = LineSplitter::new(cap, 10);
        let mut out = Vec::new();
        for chunk in chunks {
            s.feed(chunk, |l| out.push((l.bytes.to_vec(), l.start, l.end)));
        }
        let safe = s.safe_offset();
        s.finish(|l| out.push((l.bytes.to_vec(), l.start, l.end)));
        (out, safe)
    }

    #[test]
    fn offsets_follow_the_stream_across_reads() {
        let (lines, safe) = split(&[b"ab\ncd", b"e\n\nfg"], 100);
        assert_eq!(
            lines,
            vec![
                (b"ab".to_vec(), 10, 13),
                (b"cde".to_vec(), 13, 17),
                (b"".to_vec(), 17, 18),
                (b"fg".to_vec(), 18, 20),
            ]
        );
        assert_eq!(safe, 18, "the partial last line is not safe to skip");
    }

    #[test]
    fn a_straddling_line_is_capped_but_its_offsets_are_exact() {
        let (lines, _) = split(&[b"0123", b"456789", b"ab\nz\n"], 4);
        assert_eq!(lines[0], (b"0123".to_vec(), 10, 23));
        assert_eq!(lines[1], (b"z".to_vec(), 23, 25));
    }
}
