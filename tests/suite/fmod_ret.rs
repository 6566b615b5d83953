//! fmod_ret (`programs/src/bpf/fmod_ret.bpf.c`): a program modifying the return of
//! security_socket_create refuses this thread's `socket(AF_INET, SOCK_DGRAM)` with `EPERM`.
//! While attached: that call fails with exactly `EPERM`, while a stream socket on the same thread
//! and the same datagram socket on another thread are created; the program saw this thread's two
//! calls and refused one. Once detached the datagram socket is created again.

use std::mem::MaybeUninit;

use libbpf_rs::ProgramType;
use libbpf_rs::skel::{Skel, SkelBuilder};
use nix::errno::Errno;
use programs::fmod_ret::FmodRetSkelBuilder;
use testkit::observe::volatile;
use testkit::socket_refusal::refuses_the_target_only;
use testkit::{Case, ftrace, probe};

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
        let mut skel = ftrace::load(case, open, FMOD_RET, "fmod_ret on security_socket_create")?;
        skel.attach().map_err(|e| {
            ftrace::attach_refused(FMOD_RET, "attaching fmod_ret to security_socket_create", e)
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
