//! A run's output: lines read from its pipes (capped, cancel-safe) and the capped log file they
//! are written to.

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};

/// The most kept of one output line; the rest of a longer line is dropped and counted.
const LINE_CAP: usize = 1024 * 1024;

/// How much is read from a pipe at a time.
const READ_CHUNK: usize = 8 * 1024;

/// One line of output: its first `LINE_CAP` bytes, and how many bytes after them were dropped.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Line {
    pub(super) bytes: Vec<u8>,
    pub(super) dropped: u64,
}

/// Reads lines (bytes, not necessarily UTF-8) from a pipe, keeping at most `LINE_CAP` bytes of
/// each: a line without an end cannot take the server's memory.
///
/// `next` is cancel-safe: the part of a line read so far is kept in the reader, not in the
/// future, so a `next` dropped because another branch of a `select!` won loses nothing.
pub(super) struct LineReader<R> {
    reader: BufReader<R>,
    /// The head of the line being read, up to the newline not yet seen.
    line: Vec<u8>,
    /// Bytes of the line being read that did not fit under the cap.
    dropped: u64,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub(super) fn new(inner: R) -> Self {
        LineReader {
            reader: BufReader::with_capacity(READ_CHUNK, inner),
            line: Vec::new(),
            dropped: 0,
        }
    }

    /// The next line without its newline; a last line without one is a line too. `None` at the
    /// end of the output (or on a read error).
    pub(super) async fn next(&mut self) -> Option<Line> {
        loop {
            // The only await: whatever was read before it is already in `self`.
            let available = match self.reader.fill_buf().await {
                Ok(available) => available,
                Err(_) => return self.take_partial(),
            };
            if available.is_empty() {
                return self.take_partial();
            }
            match available.iter().position(|b| *b == b'\n') {
                Some(end) => {
                    keep(&mut self.line, &mut self.dropped, &available[..end]);
                    self.reader.consume(end + 1);
                    return Some(self.take());
                }
                None => {
                    let read = available.len();
                    keep(&mut self.line, &mut self.dropped, available);
                    self.reader.consume(read);
                }
            }
        }
    }

    fn take(&mut self) -> Line {
        Line {
            bytes: std::mem::take(&mut self.line),
            dropped: std::mem::take(&mut self.dropped),
        }
    }

    /// The unfinished line at the end of the output, if there is one.
    fn take_partial(&mut self) -> Option<Line> {
        (!self.line.is_empty() || self.dropped > 0).then(|| self.take())
    }
}

/// Appends what fits of `bytes` under the cap to `line`, counting the rest as dropped. The line
/// grows by doubling, as a `Vec` does, but never past the cap.
fn keep(line: &mut Vec<u8>, dropped: &mut u64, bytes: &[u8]) {
    let kept = bytes.len().min(LINE_CAP - line.len());
    if line.capacity() - line.len() < kept {
        let wanted = (line.capacity() * 2).max(line.len() + kept).min(LINE_CAP);
        line.reserve_exact(wanted - line.len());
    }
    line.extend_from_slice(&bytes[..kept]);
    *dropped += (bytes.len() - kept) as u64;
}

/// A run's log file, which stops growing at its cap.
pub(super) struct Log {
    file: tokio::fs::File,
    written: u64,
    cap: u64,
    truncated: bool,
}

impl Log {
    /// A log on a file already opened for writing.
    pub(super) fn from_std(file: std::fs::File, cap: u64) -> Log {
        Log {
            file: tokio::fs::File::from_std(file),
            written: 0,
            cap,
            truncated: false,
        }
    }

    pub(super) async fn write(&mut self, line: &[u8]) {
        self.write_prefixed(b"", line).await;
    }

    pub(super) async fn write_prefixed(&mut self, prefix: &[u8], line: &[u8]) {
        if self.truncated {
            return;
        }
        let size = (prefix.len() + line.len() + 1) as u64;
        if self.written + size > self.cap {
            if !self.truncated {
                self.truncated = true;
                let _ = self
                    .file
                    .write_all(b"[mission: log truncated at its size cap]\n")
                    .await;
            }
            return;
        }
        self.written += size;
        let _ = self.file.write_all(prefix).await;
        let _ = self.file.write_all(line).await;
        let _ = self.file.write_all(b"\n").await;
    }

    /// Notes that the line just written lost its end to the line cap.
    pub(super) async fn note_dropped(&mut self, dropped: u64) {
        if dropped > 0 {
            let note = format!("[mission: line truncated, {dropped} bytes dropped]");
            self.write(note.as_bytes()).await;
        }
    }

    pub(super) async fn finish(&mut self) {
        let _ = self.file.flush().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_half_line_survives_a_select_won_by_another_branch() {
        let (mut writer, reader) = tokio::io::duplex(64);
        let mut lines = LineReader::new(reader);
        writer.write_all(b"first-half-").await.unwrap();
        tokio::select! {
            line = lines.next() => panic!("no line is complete yet: {line:?}"),
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        writer.write_all(b"second-half\nnext").await.unwrap();
        drop(writer);
        let line = |text: &[u8]| Line {
            bytes: text.to_vec(),
            dropped: 0,
        };
        assert_eq!(lines.next().await, Some(line(b"first-half-second-half")));
        assert_eq!(
            lines.next().await,
            Some(line(b"next")),
            "a last line without a newline"
        );
        assert_eq!(lines.next().await, None);
    }

    /// An in-memory pipe that hands out its bytes a few at a time.
    struct Trickle {
        data: Vec<u8>,
        at: usize,
        step: usize,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            let end = self
                .data
                .len()
                .min(self.at + self.step.min(buf.remaining()));
            let at = self.at;
            buf.put_slice(&self.data[at..end]);
            self.at = end;
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_line_keeps_its_head_up_to_the_cap_and_the_next_line_is_intact() {
        let long = 5 * 1024 * 1024;
        let mut data = vec![b'x'; long];
        data.extend_from_slice(b"\nnext\n");
        data.extend(std::iter::repeat_n(b'y', LINE_CAP + 10));
        // An odd step: the line's growth must stop at the cap, not at a power of two past it.
        let mut lines = LineReader::new(Trickle {
            data,
            at: 0,
            step: 1000,
        });
        let first = lines.next().await.unwrap();
        assert_eq!(first.bytes.len(), LINE_CAP);
        assert!(first.bytes.iter().all(|b| *b == b'x'));
        assert_eq!(first.dropped, (long - LINE_CAP) as u64);
        assert!(
            first.bytes.capacity() <= LINE_CAP,
            "the line never held more than the cap: {}",
            first.bytes.capacity()
        );
        assert_eq!(
            lines.next().await,
            Some(Line {
                bytes: b"next".to_vec(),
                dropped: 0
            })
        );
        let last = lines.next().await.unwrap();
        assert_eq!(
            (last.bytes.len(), last.dropped),
            (LINE_CAP, 10),
            "a capped last line without a newline"
        );
        assert_eq!(lines.next().await, None);
    }
}
