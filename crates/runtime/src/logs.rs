//! A workload's combined log: the capped writer the process driver pumps output into, and the
//! chunked reader behind [`crate::Driver::logs`].
//!
//! The cap counts bytes in the file, including any left by an earlier run in the same root dir.
//! Once it is reached the rest of the output is read and dropped (so the workload never blocks
//! on a full pipe) and [`LOG_TRUNCATED_MARKER`] is written once, just past the cap.

use std::collections::VecDeque;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::error::DriverError;
use crate::workload::LOG_TRUNCATED_MARKER;

/// Most bytes one [`crate::Driver::logs`] call returns, whatever `max_bytes` asks.
pub const MAX_LOG_CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// How much of the latest output is kept in memory to classify how a workload ended.
pub(crate) const LOG_TAIL_BYTES: usize = 16 * 1024;

/// Decides, chunk by chunk, what of a stream goes into a log capped at `limit_bytes`.
#[derive(Debug)]
pub(crate) struct LogCap {
    kept_bytes: u64,
    limit_bytes: u64,
    truncated: bool,
    tail: VecDeque<u8>,
}

impl LogCap {
    pub(crate) fn new(existing_bytes: u64, limit_bytes: u64) -> Self {
        Self {
            kept_bytes: existing_bytes,
            limit_bytes,
            truncated: false,
            tail: VecDeque::new(),
        }
    }

    /// The bytes of `chunk` to append to the file (possibly followed by the marker).
    pub(crate) fn admit(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.remember_tail(chunk);
        let room = self.limit_bytes.saturating_sub(self.kept_bytes);
        let take = usize::try_from(room).unwrap_or(usize::MAX).min(chunk.len());
        let mut out = chunk[..take].to_vec();
        self.kept_bytes += take as u64;
        if take < chunk.len() && !self.truncated {
            self.truncated = true;
            out.extend_from_slice(LOG_TRUNCATED_MARKER.as_bytes());
        }
        out
    }

    fn remember_tail(&mut self, chunk: &[u8]) {
        let start = chunk.len().saturating_sub(LOG_TAIL_BYTES);
        self.tail.extend(&chunk[start..]);
        let excess = self.tail.len().saturating_sub(LOG_TAIL_BYTES);
        self.tail.drain(..excess);
    }

    /// The last [`LOG_TAIL_BYTES`] the workload wrote, kept or not.
    pub(crate) fn tail(&self) -> Vec<u8> {
        self.tail.iter().copied().collect()
    }
}

/// Reads up to `max_bytes` (at most [`MAX_LOG_CHUNK_BYTES`]) from `from_offset`. Returns the
/// data and the file's length; a missing file reads as empty.
pub(crate) fn read_chunk(
    path: &Path,
    from_offset: u64,
    max_bytes: usize,
) -> Result<(Vec<u8>, u64), DriverError> {
    let io = |action: &'static str| {
        move |source| DriverError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    };
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(io("open log")(e)),
    };
    let len = file.metadata().map_err(io("stat log"))?.len();
    if from_offset >= len {
        return Ok((Vec::new(), len));
    }
    file.seek(SeekFrom::Start(from_offset))
        .map_err(io("seek log"))?;
    let want = max_bytes.min(MAX_LOG_CHUNK_BYTES) as u64;
    let mut data = Vec::new();
    file.take(want)
        .read_to_end(&mut data)
        .map_err(io("read log"))?;
    Ok((data, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_within_the_cap_is_kept_whole() {
        let mut cap = LogCap::new(0, 10);
        assert_eq!(cap.admit(b"hello"), b"hello");
        assert_eq!(cap.admit(b"world"), b"world");
    }

    #[test]
    fn output_beyond_the_cap_is_dropped_after_one_marker() {
        let mut cap = LogCap::new(0, 8);
        let mut expected = b"hello wo".to_vec();
        expected.extend_from_slice(LOG_TRUNCATED_MARKER.as_bytes());
        assert_eq!(cap.admit(b"hello world"), expected);
        assert_eq!(cap.admit(b"more"), b"");
        assert_eq!(cap.tail(), b"hello worldmore");
    }

    #[test]
    fn bytes_already_in_the_file_count_against_the_cap() {
        let mut cap = LogCap::new(8, 10);
        let mut expected = b"ab".to_vec();
        expected.extend_from_slice(LOG_TRUNCATED_MARKER.as_bytes());
        assert_eq!(cap.admit(b"abc"), expected);
    }

    #[test]
    fn tail_keeps_only_the_latest_bytes() {
        let mut cap = LogCap::new(0, u64::MAX);
        cap.admit(&vec![b'a'; LOG_TAIL_BYTES]);
        cap.admit(b"end");
        let tail = cap.tail();
        assert_eq!(tail.len(), LOG_TAIL_BYTES);
        assert!(tail.ends_with(b"aend"));
    }

    #[test]
    fn chunks_are_read_from_an_offset_and_a_missing_log_is_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("combined.log");
        assert_eq!(read_chunk(&path, 0, 10).expect("reads"), (vec![], 0));
        std::fs::write(&path, b"0123456789").expect("writes");
        assert_eq!(
            read_chunk(&path, 3, 4).expect("reads"),
            (b"3456".to_vec(), 10)
        );
        assert_eq!(
            read_chunk(&path, 8, 100).expect("reads"),
            (b"89".to_vec(), 10)
        );
        assert_eq!(read_chunk(&path, 20, 100).expect("reads"), (vec![], 10));
    }
}
