//! Extension programs (`programs/src/bpf/freplace.bpf.c`, `freplace_ext.bpf.c`): an XDP program
//! returns what its global function `verdict` returns (`XDP_PASS`). An ext program loaded
//! against that function and attached through a link replaces it: a test run of the unchanged
//! XDP program then answers `XDP_DROP`, and the extension counts exactly that run. Dropping the
//! link restores `XDP_PASS`, and the extension no longer runs. Loading an extension sets up a BPF
//! trampoline for the target function, which a kernel that refuses trampolines by policy answers
//! with `EPERM` (`testkit::ftrace::refused`).

use std::ffi::CString;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::libbpf_sys::{self, XDP_DROP, XDP_PASS};
use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{AsRawLibbpf, Link, ProgramInput, ProgramMut, ProgramType};
use programs::freplace::FreplaceSkelBuilder;
use programs::freplace_ext::FreplaceExtSkelBuilder;
use testkit::{Case, CaseResult, floors, ftrace, link, packet, probe, test_run};

/// The global function the extension replaces.
const TARGET_FN: &str = "verdict";
/// Links of ext programs to a target program and function.
const FREPLACE: &str = "attach_type.freplace";

#[test]
fn replaces_the_verdict_function() {
    Case::run(ProgramType::Ext, |case| {
        probe::prog_type(ProgramType::Xdp)?;
        let mut target_object = MaybeUninit::uninit();
        let target = case.load(FreplaceSkelBuilder::default().open(&mut target_object)?)?;
        let xdp = &target.progs.xdp_verdict;
        let frame = packet::ethernet(0x88b5, &[0u8; 50]);
        assert_eq!(
            run(xdp, &frame)?,
            XDP_PASS,
            "the verdict before any extension"
        );

        let mut ext_object = MaybeUninit::uninit();
        let mut open = FreplaceExtSkelBuilder::default().open(&mut ext_object)?;
        open.progs
            .drop_verdict
            .set_attach_target(xdp.as_fd().as_raw_fd(), Some(TARGET_FN.to_owned()))?;
        let what = format!("an ext program for {TARGET_FN}");
        let ext = ftrace::load(case, open, "prog_type.ext", what)?;
        let link = attach(&ext.progs.drop_verdict, xdp)?;
        let bss = ext.maps.bss_data.as_deref().expect("the object has .bss");
        let replaced = || testkit::observe::volatile(&bss.replaced);
        case.detail("link_id", link.info()?.id);
        assert_eq!(run(xdp, &frame)?, XDP_DROP, "the verdict while extended");
        assert_eq!(replaced(), 1, "runs of the extension");

        testkit::link::release(link);
        assert_eq!(
            run(xdp, &frame)?,
            XDP_PASS,
            "the verdict after the link is gone"
        );
        assert_eq!(
            replaced(),
            1,
            "runs of the extension after the link is gone"
        );
        Ok(())
    });
}

/// The verdict of one test run of `prog` on `frame`.
fn run(prog: &ProgramMut<'_>, frame: &[u8]) -> CaseResult<u32> {
    let input = ProgramInput {
        data_in: Some(frame),
        ..Default::default()
    };
    Ok(test_run::run("xdp", prog, input)?.return_value)
}

/// Attaches `ext` in place of [`TARGET_FN`] of `target` (libbpf's bpf_program__attach_freplace:
/// a BPF_LINK_CREATE naming the target program and the function's BTF id).
fn attach(ext: &ProgramMut<'_>, target: &ProgramMut<'_>) -> CaseResult<Link> {
    let name = CString::new(TARGET_FN).expect("no NUL");
    // SAFETY: a loaded program of a live object, a valid target fd and a NUL-terminated name;
    // `adopt` takes what libbpf returned.
    let link = unsafe {
        link::adopt(libbpf_sys::bpf_program__attach_freplace(
            ext.as_libbpf_object().as_ptr(),
            target.as_fd().as_raw_fd(),
            name.as_ptr(),
        ))
    };
    link.map_err(|e| {
        floors::missing(
            FREPLACE,
            format!(
                "attaching the extension to {TARGET_FN}: {}",
                std::io::Error::from(e)
            ),
        )
    })
}
