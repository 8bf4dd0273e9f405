//! A run's log: its tail, or what follows an offset (for a live view that reads on from where
//! it was). The log is `RUN_DIR/output.log`, written by the runner from the agent's output.
//!
//! The run folder is writable by the run, so the file is opened as a run could have left it:
//! without following a symbolic link, without blocking on a FIFO, and only when it is a regular
//! file with one link — never the store, the configuration, or another run's log in its place.
//! What is read passes through the instance's `Redactor`: a worker's secret that its agent
//! printed is shown as `[REDACTED]`. Text is cut at line ends while the run may still write,
//! so that no secret is split across two reads.

use super::{App, AppError, AppResult};
use crate::redact::Redactor;
use mission_core::{Attempt, Run, TicketId};
use serde::Serialize;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// The most bytes one read returns.
pub const MAX_LOG_READ: u64 = 256 * 1024;

/// What part of the log to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogWindow {
    /// The last `bytes` (starting at a line).
    Tail { bytes: u64 },
    /// At most `bytes` from `offset` on.
    From { offset: u64, bytes: u64 },
}

/// A piece of a run's log.
#[derive(Clone, Debug, Serialize)]
pub struct LogChunk {
    pub run: Run,
    /// The byte offset in the file where `text` starts.
    pub start: u64,
    /// Where the next read starts (`start` plus the bytes `text` was made of).
    pub end: u64,
    /// The file's size when read.
    pub size: u64,
    /// The bytes read, as text (invalid UTF-8 replaced), secrets redacted.
    pub text: String,
    /// The run has ended: what the log holds is what it will hold, once read to `size`.
    pub ended: bool,
}

impl App {
    /// A piece of the log of attempt `attempt` of `ticket`.
    pub async fn run_log(
        &self,
        ticket: &TicketId,
        attempt: i64,
        window: LogWindow,
    ) -> AppResult<LogChunk> {
        let run = self
            .store
            .runs_of(ticket)
            .await?
            .into_iter()
            .find(|r| r.attempt == Attempt::new(attempt))
            .ok_or_else(|| {
                AppError::not_found(format!("{ticket} has no attempt {attempt}"))
                    .on_field("attempt")
            })?;
        let ended = run.ended_at.is_some();
        let Some(path) = run.log_path.clone() else {
            // Claimed, not started yet (or it failed before its log was made).
            return Ok(LogChunk {
                run,
                start: 0,
                end: 0,
                size: 0,
                text: String::new(),
                ended,
            });
        };
        let runs_dir = self.settings.runs_dir.clone();
        let redactor = Redactor::from_settings(&self.settings);
        let read = tokio::task::spawn_blocking(move || {
            read_log(Path::new(&path), &runs_dir, window, ended, &redactor)
        })
        .await
        .map_err(|e| AppError::internal(format!("reading a run log: {e}")))??;
        Ok(LogChunk {
            run,
            start: read.start,
            end: read.end,
            size: read.size,
            text: read.text,
            ended,
        })
    }
}

struct LogBytes {
    start: u64,
    end: u64,
    size: u64,
    text: String,
}

fn read_log(
    path: &Path,
    runs_dir: &Path,
    window: LogWindow,
    ended: bool,
    redactor: &Redactor,
) -> AppResult<LogBytes> {
    if !path.starts_with(runs_dir) {
        return Err(AppError::internal(format!(
            "the run's log {} is not in the runs folder",
            path.display()
        )));
    }
    let mut file = match open_plain(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(LogBytes {
                start: 0,
                end: 0,
                size: 0,
                text: String::new(),
            });
        }
        Err(error) => {
            return Err(AppError::internal(format!(
                "the run's log {} cannot be read: {error}",
                path.display()
            )));
        }
    };
    let size = file
        .metadata()
        .map_err(|e| AppError::internal(format!("the run's log: {e}")))?
        .len();
    let (start, limit) = match window {
        LogWindow::Tail { bytes } => (size.saturating_sub(bytes.min(MAX_LOG_READ)), bytes),
        LogWindow::From { offset, bytes } => (offset.min(size), bytes),
    };
    let limit = limit.clamp(1, MAX_LOG_READ);
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(start))
        .and_then(|_| file.take(limit).read_to_end(&mut bytes))
        .map_err(|e| AppError::internal(format!("the run's log: {e}")))?;
    let mut begin = 0;
    if matches!(window, LogWindow::Tail { .. }) && start > 0 {
        // A tail starts at a line.
        if let Some(newline) = bytes.iter().position(|b| *b == b'\n') {
            begin = newline + 1;
        }
    }
    let mut cut = bytes.len();
    let at_end = start + bytes.len() as u64 >= size;
    if !(ended && at_end) {
        // The run may still write: stop at the last line end, or, in a line longer than a
        // read, hold back what could be the start of a secret.
        cut = match bytes[begin..].iter().rposition(|b| *b == b'\n') {
            Some(newline) => begin + newline + 1,
            None if bytes.len() as u64 == limit => bytes
                .len()
                .saturating_sub(redactor.longest())
                .max(begin + 1),
            None => begin,
        };
        // Never in the middle of a character.
        while cut > begin && cut < bytes.len() && (bytes[cut] & 0b1100_0000) == 0b1000_0000 {
            cut -= 1;
        }
    }
    let text = redactor.redact(&String::from_utf8_lossy(&bytes[begin..cut]));
    Ok(LogBytes {
        start: start + begin as u64,
        end: start + cut as u64,
        size,
        text,
    })
}

/// Opens a run's log as the run may have left it: a symbolic link is not followed, a FIFO does
/// not block, and anything but a regular file with a single link is refused.
fn open_plain(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let flags = nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits())
        .open(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() || metadata.nlink() != 1 {
        return Err(std::io::Error::other(
            "not a regular file with a single link",
        ));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(dir: &Path, content: &[u8], window: LogWindow, ended: bool) -> LogBytes {
        let path = dir.join("output.log");
        std::fs::write(&path, content).unwrap();
        let redactor = Redactor::new(["canary-secret-1".to_owned()]);
        read_log(&path, dir, window, ended, &redactor).unwrap()
    }

    #[test]
    fn a_live_log_is_read_to_its_last_line_end_and_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let text = b"one\nkey canary-secret-1\nthree without end";
        let all = LogWindow::From {
            offset: 0,
            bytes: 1000,
        };
        let live = read(dir.path(), text, all, false);
        assert_eq!(live.text, "one\nkey [REDACTED]\n");
        assert_eq!((live.start, live.end, live.size), (0, 24, 41));
        let ended = read(dir.path(), text, all, true);
        assert_eq!(ended.text, "one\nkey [REDACTED]\nthree without end");
        assert_eq!(ended.end, 41);
        // On from there.
        let next = read(
            dir.path(),
            text,
            LogWindow::From {
                offset: 24,
                bytes: 1000,
            },
            true,
        );
        assert_eq!(next.text, "three without end");
    }

    #[test]
    fn a_tail_starts_at_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let tail = read(
            dir.path(),
            b"first\nsecond\nthird\n",
            LogWindow::Tail { bytes: 9 },
            true,
        );
        assert_eq!(tail.text, "third\n");
        assert_eq!(tail.start, 13);
    }

    #[test]
    fn a_long_line_holds_back_what_could_start_a_secret() {
        let dir = tempfile::tempdir().unwrap();
        let content = b"xxxxxxxxxxcanary-secret-1 and more";
        let first = read(
            dir.path(),
            content,
            LogWindow::From {
                offset: 0,
                bytes: 20,
            },
            false,
        );
        assert!(!first.text.contains("canary"), "{}", first.text);
        let second = read(
            dir.path(),
            content,
            LogWindow::From {
                offset: first.end,
                bytes: 100,
            },
            true,
        );
        assert_eq!(
            format!("{}{}", first.text, second.text),
            "xxxxxxxxxx[REDACTED] and more"
        );
    }

    #[test]
    fn a_link_or_a_fifo_in_place_of_the_log_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("mission.toml");
        std::fs::write(&secret, "env = { KEY = \"x\" }").unwrap();
        let log = dir.path().join("output.log");
        std::os::unix::fs::symlink(&secret, &log).unwrap();
        let window = LogWindow::Tail { bytes: 100 };
        let redactor = Redactor::default();
        assert!(read_log(&log, dir.path(), window, true, &redactor).is_err());
        std::fs::remove_file(&log).unwrap();
        std::fs::hard_link(&secret, &log).unwrap();
        assert!(read_log(&log, dir.path(), window, true, &redactor).is_err());
        std::fs::remove_file(&log).unwrap();
        nix::unistd::mkfifo(&log, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(read_log(&log, dir.path(), window, true, &redactor).is_err());
        // Outside the runs folder.
        let outside = tempfile::tempdir().unwrap();
        assert!(read_log(&secret, outside.path(), window, true, &redactor).is_err());
    }
}
