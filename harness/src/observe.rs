//! Observing from outside the program: polling for a value with a deadline, and trigger commands
//! that are killed when dropped.

use std::cell::Cell;
use std::time::{Duration, Instant};

use libbpf_rs::{MapCore, RingBufferBuilder};

use crate::outcome::{CaseResult, OrError};

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

/// The next datagram on `sock` within `wait` (`None` when none came).
pub fn next_datagram(
    sock: &std::net::UdpSocket,
    wait: Duration,
) -> std::io::Result<Option<Datagram>> {
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

/// What arrives on `sock`: up to `expected` datagrams, waiting up to 2 s for each, then whatever
/// else comes within 100 ms (strays past the expected count, or datagrams that must not arrive).
pub fn datagrams(sock: &std::net::UdpSocket, expected: usize) -> std::io::Result<Vec<Datagram>> {
    let mut got = Vec::new();
    while got.len() < expected {
        match next_datagram(sock, Duration::from_secs(2))? {
            Some(d) => got.push(d),
            None => return Ok(got),
        }
    }
    while let Some(d) = next_datagram(sock, Duration::from_millis(100))? {
        got.push(d);
    }
    Ok(got)
}

/// [`next_datagram`]'s payload as text.
pub fn next_text(sock: &std::net::UdpSocket, wait: Duration) -> std::io::Result<Option<String>> {
    Ok(next_datagram(sock, wait)?.map(|(d, _)| String::from_utf8_lossy(&d).into_owned()))
}

/// [`datagrams`]' payloads as text.
pub fn datagram_texts(sock: &std::net::UdpSocket, expected: usize) -> std::io::Result<Vec<String>> {
    Ok(datagrams(sock, expected)?
        .iter()
        .map(|(d, _)| String::from_utf8_lossy(d).into_owned())
        .collect())
}
