//! The judgement of a program that refuses one socket(2) call of one thread (fmod_ret on
//! security_socket_create, BPF LSM on socket_create): this thread's `socket(AF_INET, SOCK_DGRAM)`
//! is refused with the program's errno while a stream socket on the same thread and the same
//! datagram socket on another thread are created, and the call succeeds again once detached.

use std::os::fd::OwnedFd;

use nix::errno::Errno;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};

use crate::{Case, CaseError, CaseResult};

/// The answers of [`target_and_controls`] while attached (the target refused with `errno`, the
/// controls created), the program's `counters` (this thread's calls seen, refused), and once
/// `detach` ran, the target call created with no further refusal.
pub fn refuses_the_target_only(
    case: &mut Case,
    errno: Errno,
    counters: impl Fn() -> (u32, u32),
    detach: impl FnOnce(),
) -> CaseResult {
    let calls = target_and_controls()?;
    case.detail("calls", format!("{calls:?}"));
    let (seen, denied) = counters();
    case.detail("seen", seen);
    case.detail("denied", denied);
    assert_eq!(
        calls,
        Calls {
            target: Err(errno),
            other_type: Ok(()),
            other_thread: Ok(()),
        },
        "socket(2) answers while attached"
    );
    assert_eq!(
        (seen, denied),
        (2, 1),
        "this thread's calls seen and refused"
    );
    detach();
    assert_eq!(dgram().map(drop), Ok(()), "the target call once detached");
    assert_eq!(counters().1, 1, "refusals once detached");
    Ok(())
}

/// socket(2)'s answers: the target call, a stream socket on the same thread, the target call on
/// another thread.
#[derive(Debug, PartialEq)]
struct Calls {
    target: nix::Result<()>,
    other_type: nix::Result<()>,
    other_thread: nix::Result<()>,
}

/// Makes the three calls of [`Calls`] (this thread makes exactly two).
fn target_and_controls() -> CaseResult<Calls> {
    let target = dgram().map(drop);
    let other_type = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )
    .map(drop);
    let other_thread = std::thread::spawn(|| dgram().map(drop))
        .join()
        .map_err(|_| CaseError::Error(anyhow::anyhow!("the other thread panicked")))?;
    Ok(Calls {
        target,
        other_type,
        other_thread,
    })
}

/// `socket(AF_INET, SOCK_DGRAM, 0)`: the refused call.
fn dgram() -> nix::Result<OwnedFd> {
    socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::empty(),
        None,
    )
}
