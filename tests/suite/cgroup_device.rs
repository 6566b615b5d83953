//! cgroup_device (`programs/src/bpf/cgroup_device.bpf.c`): the device controller of the test's own
//! cgroup v2 child. The program refuses the character device of `/dev/null` (its major:minor, 1:3,
//! read from the node and handed to the program before load) and allows every other device.
//!
//! A child process forked into the cgroup opens `/dev/null` and then `/dev/zero` and reports the
//! errno of each open (and the first bytes read): `/dev/null` must fail with EPERM, while
//! `/dev/zero` opens and reads zeros. The test process, outside the cgroup, still opens
//! `/dev/null` (the program only governs its cgroup), and the program's own counters saw exactly
//! the child's two device accesses: one refusal, one allowed open.
//!
//! No test-run cases: the kernel does not implement BPF_PROG_TEST_RUN for this program type
//! (ENOTSUPP, checked on 6.18).

use std::io::Read;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;

use libbpf_rs::ProgramType;
use nix::errno::Errno;
use programs::cgroup_device::CgroupDeviceSkelBuilder;
use testkit::{Case, CaseError, Cgroup, OrError, child, probe};

const DENIED: &str = "/dev/null";
const ALLOWED: &str = "/dev/zero";

/// What the child's opens gave: the errno of each failure, the first bytes of `/dev/zero`.
#[derive(Clone, Copy, Debug)]
struct Opened {
    denied: Result<(), Errno>,
    allowed: Result<[u8; 4], Errno>,
}

/// Opens [`DENIED`] and [`ALLOWED`] (and reads the latter): the only device accesses it makes.
fn open_devices() -> Opened {
    let denied = child::errno(std::fs::File::open(DENIED).map(drop));
    let allowed = child::errno(std::fs::File::open(ALLOWED).and_then(|mut zero| {
        let mut head = [0xffu8; 4];
        zero.read_exact(&mut head).map(|()| head)
    }));
    Opened { denied, allowed }
}

#[test]
fn denies_one_char_device() {
    Case::run(ProgramType::CgroupDevice, |case| {
        probe::prog_type(ProgramType::CgroupDevice)?;
        let rdev = std::fs::metadata(DENIED).or_error("stat /dev/null")?.rdev();
        let (major, minor) = (libc::major(rdev), libc::minor(rdev));
        case.detail("denied_device", format!("{DENIED} {major}:{minor}"));

        let mut object = MaybeUninit::uninit();
        let skel = case.open_load(CgroupDeviceSkelBuilder::default(), &mut object, |open| {
            let rodata = open.maps.rodata_data.as_deref_mut().expect(".rodata");
            rodata.denied_major = major;
            rodata.denied_minor = minor;
        })?;

        let cg = Cgroup::new()?;
        let _link = skel
            .progs
            .deny_one_char_device
            .attach_cgroup(cg.as_fd().as_raw_fd())?;

        let opened = child::in_cgroup(&cg).run(open_devices)?;
        case.detail("child", format!("{opened:?}"));
        assert_eq!(
            opened.denied,
            Err(Errno::EPERM),
            "opening {DENIED} inside the cgroup"
        );
        assert_eq!(
            opened.allowed,
            Ok([0; 4]),
            "opening and reading {ALLOWED} inside the cgroup"
        );

        // Outside the cgroup the device still opens.
        std::fs::File::open(DENIED).map_err(|e| {
            CaseError::Fail(anyhow::anyhow!(
                "{DENIED} no longer opens outside the test cgroup: {e}"
            ))
        })?;

        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
        case.detail("program_denied", bss.denied);
        case.detail("program_allowed", bss.allowed);
        assert_eq!(bss.denied, 1, "refusals the program counted");
        assert_eq!(bss.allowed, 1, "allowed accesses the program counted");
        Ok(())
    });
}
