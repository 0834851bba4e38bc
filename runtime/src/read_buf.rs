//! A connection's read buffer: bytes read from the socket wait here until a whole request is
//! parsed from them in place (requests borrow from it; values are copied once, into the store).

/// Bytes start..end of `buf` are unread input; the rest is room for the next read.
#[derive(Debug)]
pub struct ReadBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    initial: usize,
}

/// Least free room offered to a read.
const MIN_READ: usize = 4096;

impl ReadBuf {
    /// A buffer that starts at `initial` bytes and shrinks back to it when idle.
    pub fn new(initial: usize) -> Self {
        ReadBuf {
            buf: vec![0; initial],
            start: 0,
            end: 0,
            initial,
        }
    }

    /// The unread bytes.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Marks `n` unread bytes as consumed.
    #[inline]
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Room to read into, at least `want` bytes (growing or compacting as needed).
    pub fn spare(&mut self, want: usize) -> &mut [u8] {
        let want = want.max(MIN_READ);
        if self.buf.len() - self.end < want {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.buf.len() - self.end < want {
                let len = (self.end + want).next_power_of_two();
                self.buf.resize(len, 0);
            }
        }
        &mut self.buf[self.end..]
    }

    /// Records that `n` bytes were read into [`ReadBuf::spare`].
    #[inline]
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Gives back memory a large request grew the buffer to, once it is empty.
    pub fn shrink_if_idle(&mut self) {
        if self.start == self.end && self.buf.len() > self.initial * 4 {
            self.buf = vec![0; self.initial];
            self.start = 0;
            self.end = 0;
        }
    }

    /// Bytes held by the buffer.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_compacts_and_shrinks() {
        let mut b = ReadBuf::new(8192);
        let s = b.spare(10);
        s[..5].copy_from_slice(b"hello");
        b.filled(5);
        b.consume(2);
        assert_eq!(b.data(), b"llo");
        let s = b.spare(100_000);
        assert!(s.len() >= 100_000);
        assert_eq!(b.data(), b"llo");
        b.consume(3);
        b.shrink_if_idle();
        assert_eq!(b.capacity(), 8192);
    }
}
