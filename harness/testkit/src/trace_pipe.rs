//! The kernel's `trace_pipe`: one global buffer that reading consumes. A reader holds an exclusive
//! lock (across threads and processes) from before it triggers its event until it has found its own
//! line, so no other case consumes it.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use crate::outcome::{CaseResult, OrError};

/// An open, locked `trace_pipe`.
pub struct TracePipe {
    pipe: File,
    pending: String,
    // Held for the reader's lifetime: the lock on the tracefs directory.
    _lock: File,
}

impl TracePipe {
    /// Takes the trace_pipe lock (waiting for other readers) and opens the pipe, mounting tracefs
    /// when needed. Open it before triggering the event to be read.
    pub fn open() -> CaseResult<Self> {
        let dir = crate::mounts::tracefs()?;
        let lock = File::open(&dir).or_error("opening the tracefs directory")?;
        lock.lock().or_error("locking trace_pipe")?;
        let pipe = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(dir.join("trace_pipe"))
            .or_error("opening trace_pipe")?;
        Ok(TracePipe {
            pipe,
            pending: String::new(),
            _lock: lock,
        })
    }

    /// Reads lines until one satisfies `wanted` (returned) or `timeout` passes (`None`). Lines that
    /// do not match are consumed and dropped.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        mut wanted: impl FnMut(&str) -> bool,
    ) -> CaseResult<Option<String>> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 8192];
        loop {
            while let Some(end) = self.pending.find('\n') {
                let line: String = self.pending.drain(..=end).collect();
                if wanted(line.trim_end()) {
                    return Ok(Some(line.trim_end().to_owned()));
                }
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            match self.pipe.read(&mut buf) {
                Ok(n) => self.pending.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => return Err(e).or_error("reading trace_pipe"),
            }
        }
    }
}
