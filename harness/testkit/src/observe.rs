//! Observing from outside the program: polling for a value with a deadline, what arrived before a
//! sentinel, and trigger commands that are killed when dropped.

use std::cell::Cell;
use std::net::UdpSocket;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use libbpf_rs::{MapCore, RingBufferBuilder};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sched::{CpuSet, sched_getaffinity, sched_getcpu, sched_setaffinity};
use nix::unistd::Pid;

use crate::outcome::{CaseError, CaseResult, OrError};

/// Calls `probe` every 10 ms until it returns `Some` or `timeout` passes; returns the last answer.
pub fn poll<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits up to `timeout` for `fd` to be readable (for a listener: a connection is waiting to be
/// accepted); `false` when the time passed first.
pub fn readable(fd: impl AsFd, timeout: Duration) -> std::io::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        match nix::poll::poll(&mut [PollFd::new(fd.as_fd(), PollFlags::POLLIN)], wait) {
            Ok(n) => return Ok(n > 0),
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Polls the ring buffer `map`, handing each event's bytes to `on_event`, until `on_event` returns
/// `true` (all that was awaited arrived: `Ok(true)`) or `timeout` passes (`Ok(false)`).
pub fn ring_buffer(
    map: &dyn MapCore,
    timeout: Duration,
    mut on_event: impl FnMut(&[u8]) -> bool,
) -> CaseResult<bool> {
    let done = Cell::new(false);
    let mut builder = RingBufferBuilder::new();
    builder
        .add(map, |data| {
            if !done.get() && on_event(data) {
                done.set(true);
            }
            0
        })
        .or_error("registering the ring buffer")?;
    let ring = builder.build().or_error("opening the ring buffer")?;
    let deadline = Instant::now() + timeout;
    while !done.get() && Instant::now() < deadline {
        ring.poll(Duration::from_millis(50))
            .or_error("polling the ring buffer")?;
    }
    Ok(done.get())
}

/// A started command that is killed (and reaped) when dropped, so a failing case leaves no child.
pub struct Trigger(duct::Handle);

impl Trigger {
    /// Starts `expr` with its output captured.
    pub fn start(expr: duct::Expression) -> CaseResult<Self> {
        let handle = expr
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .start()
            .or_error("starting a trigger command")?;
        Ok(Trigger(handle))
    }

    /// The pids of the command's processes.
    pub fn pids(&self) -> Vec<u32> {
        self.0.pids()
    }

    /// Waits for the command to finish and returns its output.
    pub fn wait(self) -> CaseResult<std::process::Output> {
        self.0
            .wait()
            .cloned()
            .or_error("waiting for a trigger command")
    }
}

impl Drop for Trigger {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
    }
}

/// Reads a variable of a skeleton's mmapped `.bss`/`.data` that the program updates concurrently
/// (a plain read may be hoisted or cached by the compiler).
pub fn volatile<T: Copy>(value: &T) -> T {
    // SAFETY: `value` is a valid, aligned reference; read_volatile only prevents the compiler from
    // assuming nobody else writes it.
    unsafe { std::ptr::read_volatile(value) }
}

/// One datagram: its bytes and its sender.
pub type Datagram = (Vec<u8>, std::net::SocketAddr);

/// How long something that must arrive (a sentinel) may take. Generous: only a failing case waits
/// it out, so it costs nothing when all is well, even under emulation.
pub const MUST_ARRIVE: Duration = Duration::from_secs(10);

/// What arrived before the sentinel: calls `next` (the next item within the time given, `None`
/// when none came) until `is_sentinel` picks an item, and returns the items before it.
///
/// "X did not arrive" holds when X is not among them and the sentinel was sent behind X on X's
/// path (same sender, route, queue and program, which passes the sentinel): on a FIFO path X
/// cannot come after it. A sentinel missing after [`MUST_ARRIVE`] is a fail naming it (`name`).
pub fn until_sentinel<T>(
    name: &str,
    mut next: impl FnMut(Duration) -> CaseResult<Option<T>>,
    is_sentinel: impl Fn(&T) -> bool,
) -> CaseResult<Vec<T>> {
    let deadline = Instant::now() + MUST_ARRIVE;
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let item = if left.is_zero() { None } else { next(left)? };
        match item {
            Some(item) if is_sentinel(&item) => return Ok(before),
            Some(item) => before.push(item),
            None => {
                return Err(CaseError::Fail(anyhow::anyhow!(
                    "{name} did not arrive within {MUST_ARRIVE:?} ({} other items did)",
                    before.len()
                )));
            }
        }
    }
}

/// The datagrams that arrived on `sock` before the one whose payload is `sentinel`
/// ([`until_sentinel`]).
pub fn datagrams_before(sock: &UdpSocket, sentinel: &[u8]) -> CaseResult<Vec<Datagram>> {
    let name = format!(
        "the sentinel datagram {:?} on {}",
        String::from_utf8_lossy(sentinel),
        sock.local_addr()?
    );
    until_sentinel(
        &name,
        |wait| Ok(next_datagram(sock, wait)?),
        |(data, _)| data == sentinel,
    )
}

/// The payloads of [`datagrams_before`], as text.
pub fn texts_before(sock: &UdpSocket, sentinel: &str) -> CaseResult<Vec<String>> {
    Ok(texts(&datagrams_before(sock, sentinel.as_bytes())?))
}

/// What `sock` holds now, read without waiting. For a socket that must receive nothing: read it
/// once a sentinel sent behind the unwanted datagrams on their path has arrived (on any socket:
/// the kernel delivers a datagram to its socket's queue while it processes the packet).
pub fn queued(sock: &UdpSocket) -> std::io::Result<Vec<Datagram>> {
    sock.set_nonblocking(true)?;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    let end = loop {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => got.push((buf[..n].to_vec(), from)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    sock.set_nonblocking(false)?;
    end.map(|()| got)
}

/// The datagrams' payloads as text.
pub fn texts(datagrams: &[Datagram]) -> Vec<String> {
    datagrams
        .iter()
        .map(|(d, _)| String::from_utf8_lossy(d).into_owned())
        .collect()
}

/// Keeps the calling thread on the CPU it runs on until dropped, then restores its affinity.
///
/// A packet a thread sends enters the receive path through its CPU's backlog (veth, loopback):
/// one CPU's backlog is FIFO, two CPUs' are not ordered. So a sentinel proves something about the
/// packets ahead of it only when the thread sent them all from one CPU.
pub struct OneCpu(CpuSet);

impl OneCpu {
    /// Pins the calling thread to its current CPU.
    pub fn pin() -> CaseResult<Self> {
        let me = Pid::from_raw(0);
        let previous = sched_getaffinity(me).or_error("reading the thread's CPU affinity")?;
        let mut only = CpuSet::new();
        only.set(sched_getcpu().or_error("finding the thread's CPU")?)
            .or_error("naming the thread's CPU")?;
        sched_setaffinity(me, &only).or_error("pinning the thread to its CPU")?;
        Ok(OneCpu(previous))
    }

    /// Moves the calling thread to `cpu` and keeps it there until dropped.
    pub fn on(cpu: usize) -> CaseResult<Self> {
        let me = Pid::from_raw(0);
        let previous = sched_getaffinity(me).or_error("reading the thread's CPU affinity")?;
        let mut only = CpuSet::new();
        only.set(cpu).or_error("naming the CPU")?;
        sched_setaffinity(me, &only).or_error("moving the thread to the CPU")?;
        Ok(OneCpu(previous))
    }

    /// The CPUs the calling thread may run on.
    pub fn allowed() -> CaseResult<Vec<usize>> {
        let set = sched_getaffinity(Pid::from_raw(0)).or_error("reading the CPU affinity")?;
        Ok((0..CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect())
    }
}

impl Drop for OneCpu {
    fn drop(&mut self) {
        let _ = sched_setaffinity(Pid::from_raw(0), &self.0);
    }
}

/// The next datagram on `sock` within `wait` (`None` when none came).
fn next_datagram(sock: &UdpSocket, wait: Duration) -> std::io::Result<Option<Datagram>> {
    sock.set_read_timeout(Some(wait))?;
    let mut buf = vec![0u8; 65536];
    match sock.recv_from(&mut buf) {
        Ok((n, from)) => {
            buf.truncate(n);
            Ok(Some((buf, from)))
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}
