//! fmod_ret (`programs/src/bpf/fmod_ret.bpf.c`): a program modifying the return of
//! security_socket_create refuses this thread's `socket(AF_INET, SOCK_DGRAM)` with `EPERM`.
//! While attached: that call fails with exactly `EPERM`, while a stream socket on the same thread
//! and the same datagram socket on another thread are created; the program saw this thread's two
//! calls and refused one. Once detached the datagram socket is created again.

use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;

use libbpf_rs::skel::{Skel, SkelBuilder};
use libbpf_rs::{ErrorKind, ProgramType};
use nix::errno::Errno;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
use programs::fmod_ret::FmodRetSkelBuilder;
use testkit::observe::volatile;
use testkit::{Case, CaseResult, LogLevel, ftrace, probe};

/// fmod_ret on a security_* function.
const FMOD_RET: &str = "attach_type.fmod_ret";

#[test]
fn refuses_one_socket_call() {
    Case::run(ProgramType::Tracing, |case| {
        // security_socket_create is an inline stub without the socket hooks.
        probe::config_builtin("CONFIG_SECURITY_NETWORK")?;
        let mut object = MaybeUninit::uninit();
        let mut open = FmodRetSkelBuilder::default().open(&mut object)?;
        let rodata = open
            .maps
            .rodata_data
            .as_deref_mut()
            .expect(".rodata is mmapped before load");
        rodata.target_tid = nix::unistd::gettid().as_raw() as u32;
        rodata.target_family = libc::AF_INET;
        rodata.target_type = libc::SOCK_DGRAM;
        let (loaded, outcome) = case.try_load(open, LogLevel::Stats);
        let mut skel = loaded.map_err(|e| {
            ftrace::refused(
                FMOD_RET,
                outcome.errno.as_deref() == Some("EPERM"),
                format!(
                    "loading fmod_ret on security_socket_create: {} ({e:#})",
                    outcome.message.clone().unwrap_or_default()
                ),
            )
        })?;
        skel.attach().map_err(|e| {
            ftrace::refused(
                FMOD_RET,
                e.kind() == ErrorKind::PermissionDenied,
                format!("attaching fmod_ret to security_socket_create: {e:#}"),
            )
        })?;

        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
        refuses_the_target_only(
            case,
            Errno::EPERM,
            || (volatile(&bss.seen), volatile(&bss.denied)),
            || skel.links.deny_socket = None,
        )
    });
}

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
        .map_err(|_| testkit::CaseError::Error(anyhow::anyhow!("the other thread panicked")))?;
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
