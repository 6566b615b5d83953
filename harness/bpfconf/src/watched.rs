//! A child process watched from outside: in a process group of its own (so whatever it starts goes
//! with it), its output read line by line as it comes, and the whole group killed at a deadline.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Process groups running now, killed by [`kill_all`].
static RUNNING: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Kills every watched process group, e.g. on Ctrl-C (the terminal's signal does not reach them).
pub fn kill_all() {
    for pgid in RUNNING.lock().expect("group list lock").drain(..) {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
}

/// How a watched child ended.
#[derive(Debug)]
pub struct Ended {
    /// Its exit status (a signal when it was killed).
    pub status: ExitStatus,
    /// Killed at the deadline.
    pub timed_out: bool,
    /// From start to end.
    pub elapsed: Duration,
}

/// What the caller wants after a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Keep reading.
    Go,
    /// Kill the process group now (it can only hang from here).
    Kill,
    /// Kill it at this instant unless a later line moves or clears the deadline (the overall
    /// timeout holds regardless).
    KillAt(Option<Instant>),
}

enum Watch {
    Ended,
    KillAt(Option<Instant>),
}

/// Runs `cmd` with stdin closed and stdout + stderr merged, calling `on_line` for each line; kills
/// its process group after `timeout`, when `on_line` says so, and once it has ended (whatever it
/// left running).
pub fn run(
    mut cmd: Command,
    timeout: Duration,
    mut on_line: impl FnMut(&str) -> Next,
) -> Result<Ended> {
    let started = Instant::now();
    let (reader, writer) = std::io::pipe().context("creating a pipe")?;
    cmd.stdin(Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer)
        .process_group(0);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    drop(cmd);
    let pgid = Pid::from_raw(child.id() as i32);
    RUNNING.lock().expect("group list lock").push(pgid.as_raw());

    // The watchdog kills the group at the earlier of the timeout and the caller's deadline; the
    // waiter reaps the child and then kills the group, so a grandchild left holding the output
    // pipe cannot keep the reading loop waiting.
    let (watch, watched) = mpsc::channel::<Watch>();
    let timeout_at = started + timeout;
    let watchdog = std::thread::spawn(move || {
        let mut extra: Option<Instant> = None;
        loop {
            let at = extra.map_or(timeout_at, |e| e.min(timeout_at));
            match watched.recv_timeout(at.saturating_duration_since(Instant::now())) {
                Ok(Watch::Ended) | Err(mpsc::RecvTimeoutError::Disconnected) => return false,
                Ok(Watch::KillAt(at)) => extra = at,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = killpg(pgid, Signal::SIGKILL);
                    return true;
                }
            }
        }
    });
    let ended = watch.clone();
    let waiter = std::thread::spawn(move || {
        let status = child.wait();
        let _ = ended.send(Watch::Ended);
        let _ = killpg(pgid, Signal::SIGKILL);
        status
    });
    for line in BufReader::new(reader).lines() {
        match on_line(&line.unwrap_or_default()) {
            Next::Go => {}
            Next::Kill => {
                let _ = killpg(pgid, Signal::SIGKILL);
            }
            Next::KillAt(at) => {
                let _ = watch.send(Watch::KillAt(at));
            }
        }
    }
    let status = waiter.join().expect("waiter thread")?;
    RUNNING
        .lock()
        .expect("group list lock")
        .retain(|&p| p != pgid.as_raw());
    let timed_out = watchdog.join().unwrap_or(false) && !status.success();
    Ok(Ended {
        status,
        timed_out,
        elapsed: started.elapsed(),
    })
}
