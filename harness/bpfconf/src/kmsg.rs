//! The kernel log (`/dev/kmsg`) from a point on: the splats (`WARNING:`, `BUG:`, Oops, sanitizer
//! reports, stalls) that a test binary left there while it ran.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use regex::Regex;

/// Lines that mean the kernel went wrong (as libbpf's CI looks for them).
const SPLATS: &[&str] = &[
    "BUG:",
    "WARNING:",
    "Oops",
    "KASAN",
    "UBSAN",
    "rcu_sched self-detected stall",
    "soft lockup",
    "refcount_t:",
    "list_add corruption",
];

/// A reader of `/dev/kmsg` that sees only what was logged after it was opened.
pub struct Kmsg(File);

impl Kmsg {
    /// Opens the kernel log positioned at its end.
    pub fn open_at_end() -> io::Result<Self> {
        let mut file = OpenOptions::new()
            .read(true)
            .custom_flags(OFlag::O_NONBLOCK.bits())
            .open("/dev/kmsg")?;
        file.seek(SeekFrom::End(0))?;
        Ok(Kmsg(file))
    }

    /// The messages logged since the last call (one per record, continuation lines dropped).
    pub fn new_messages(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            match self.0.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend(message(&buf[..n])),
                // Records overwritten before they were read: go on with the next.
                Err(e) if e.raw_os_error() == Some(Errno::EPIPE as i32) => continue,
                Err(_) => break, // EAGAIN: nothing more
            }
        }
        out
    }

    /// The new messages that are splats and match none of `allowed`.
    pub fn splats(&mut self, allowed: &[Regex]) -> Vec<String> {
        self.new_messages()
            .into_iter()
            .filter(|m| is_splat(m) && !allowed.iter().any(|a| a.is_match(m)))
            .collect()
    }
}

/// The text of one `/dev/kmsg` record (`prio,seq,usec,flags;text\n continuation…`).
fn message(record: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(record);
    let (_, msg) = text.split_once(';')?;
    Some(msg.lines().next().unwrap_or("").to_owned())
}

fn is_splat(message: &str) -> bool {
    SPLATS.iter().any(|s| message.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_splats() {
        let m = message(b"4,1234,5678,-;WARNING: CPU: 0 PID: 1 at foo\n SUBSYSTEM=x\n").unwrap();
        assert_eq!(m, "WARNING: CPU: 0 PID: 1 at foo");
        assert!(is_splat(&m));
        assert!(!is_splat("bpfconf: ordinary line"));
        assert!(is_splat(
            "watchdog: BUG: soft lockup - CPU#0 stuck for 22s!"
        ));
    }
}
