//! A time budget per load: the verifier gives up when a signal is pending (it checks between
//! instructions and returns `EAGAIN`), so a per-thread timer that signals the loading thread at the
//! deadline (and every second after, through libbpf's retries) ends a verification that runs past
//! it. Some of the kernel's own tests walk a million instructions on purpose; under emulation one
//! such load at log level 1 took nine minutes, a column's whole budget.

use std::sync::Once;
use std::time::{Duration, Instant};

use nix::sys::signal::{SaFlags, SigAction, SigEvent, SigHandler, SigSet, SigevNotify, Signal};
use nix::sys::time::TimeSpec;
use nix::sys::timer::{Expiration, Timer, TimerSetTimeFlags};
use nix::time::ClockId;

/// The signal the deadline sends (its handler does nothing: the signal only interrupts).
const SIGNAL: Signal = Signal::SIGUSR2;

extern "C" fn ignore(_: libc::c_int) {}

/// Runs `f` on this thread with a deadline `budget` away; returns its result and whether the
/// deadline passed while it ran.
pub fn within<T>(budget: Duration, f: impl FnOnce() -> T) -> (T, bool) {
    static HANDLER: Once = Once::new();
    HANDLER.call_once(|| {
        let action = SigAction::new(
            SigHandler::Handler(ignore),
            SaFlags::empty(),
            SigSet::empty(),
        );
        // SAFETY: the handler does nothing, so it is async-signal-safe.
        let _ = unsafe { nix::sys::signal::sigaction(SIGNAL, &action) };
    });
    let event = SigEvent::new(SigevNotify::SigevThreadId {
        signal: SIGNAL,
        thread_id: nix::unistd::gettid().as_raw(),
        si_value: 0,
    });
    let timer = Timer::new(ClockId::CLOCK_MONOTONIC, event)
        .ok()
        .and_then(|mut t| {
            let first = TimeSpec::from_duration(budget);
            let then = TimeSpec::from_duration(Duration::from_secs(1));
            t.set(
                Expiration::IntervalDelayed(first, then),
                TimerSetTimeFlags::empty(),
            )
            .ok()
            .map(|()| t)
        });
    let started = Instant::now();
    let result = f();
    drop(timer);
    (result, started.elapsed() >= budget)
}
