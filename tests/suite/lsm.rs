//! BPF LSM (`programs/src/bpf/lsm.bpf.c`): a program on the socket_create hook refuses this
//! thread's `socket(AF_INET, SOCK_DGRAM)` with `EACCES`. While attached: that call fails with
//! exactly `EACCES`, while a stream socket on the same thread and the same datagram socket on
//! another thread are created; the program saw this thread's two calls and refused one. Once
//! detached the datagram socket is created again. The calls and their judgement are
//! `testkit::socket_refusal`'s, shared with fmod_ret, which refuses the same one through
//! security_socket_create's return.
//!
//! The hooks call BPF programs only where `bpf` is among the active LSMs
//! (`testkit::lsm::require_bpf_active`).

use std::mem::MaybeUninit;

use libbpf_rs::ProgramType;
use libbpf_rs::skel::{Skel, SkelBuilder};
use nix::errno::Errno;
use programs::lsm::LsmSkelBuilder;
use testkit::observe::volatile;
use testkit::socket_refusal::refuses_the_target_only;
use testkit::{Case, ftrace, probe};

#[test]
fn refuses_one_socket_call() {
    Case::run(ProgramType::Lsm, |case| {
        // security_socket_create is an inline stub without the socket hooks.
        probe::config_builtin("CONFIG_SECURITY_NETWORK")?;
        let active = testkit::lsm::require_bpf_active()?;
        case.detail("active_lsms", &active);
        let mut object = MaybeUninit::uninit();
        let mut open = LsmSkelBuilder::default().open(&mut object)?;
        let rodata = open
            .maps
            .rodata_data
            .as_deref_mut()
            .expect(".rodata is mmapped before load");
        rodata.target_tid = nix::unistd::gettid().as_raw() as u32;
        rodata.target_family = libc::AF_INET;
        rodata.target_type = libc::SOCK_DGRAM;
        let mut skel = ftrace::load(case, open, "prog_type.lsm", "lsm/socket_create")?;
        skel.attach().map_err(|e| {
            ftrace::attach_refused("prog_type.lsm", "attaching lsm/socket_create", e)
        })?;

        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
        refuses_the_target_only(
            case,
            Errno::EACCES,
            || (volatile(&bss.seen), volatile(&bss.denied)),
            || skel.links.deny_socket = None,
        )
    });
}
