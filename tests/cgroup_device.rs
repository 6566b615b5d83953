//! cgroup_device (`programs/src/bpf/cgroup_device.bpf.c`): the device controller of the test's own
//! cgroup v2 child. The program refuses the character device of `/dev/null` (its major:minor, 1:3,
//! read from the node and handed to the program before load) and allows every other device.
//!
//! A python3 client started inside the cgroup opens `/dev/null` and `/dev/zero` and reports the
//! errno of each open (and the first bytes read) as JSON: `/dev/null` must fail with EPERM, while
//! `/dev/zero` opens and reads zeros. The test process, outside the cgroup, still opens
//! `/dev/null` (the program only governs its cgroup), and the program's own counters saw exactly
//! one refusal.
//!
//! No test-run cases: the kernel does not implement BPF_PROG_TEST_RUN for this program type
//! (ENOTSUPP, checked on 6.18).

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;

use harness::{Case, CaseError, Cgroup, OrError, client, probe};
use libbpf_rs::ProgramType;
use libbpf_rs::skel::SkelBuilder;
use programs::cgroup_device::CgroupDeviceSkelBuilder;

/// Opens every path in argv, reports `{path: {"errno": name-or-null, "read": hex}}`.
const OPEN_DEVICES: &str = r#"
import errno, json, os, sys
def try_open(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        return {"errno": errno.errorcode.get(e.errno, str(e.errno))}
    data = os.read(fd, 4)
    os.close(fd)
    return {"errno": None, "read": data.hex()}
print(json.dumps({p: try_open(p) for p in sys.argv[1:]}))
"#;

const DENIED: &str = "/dev/null";
const ALLOWED: &str = "/dev/zero";

#[test]
fn denies_one_char_device() {
    Case::run(
        "cgroup_device::denies_one_char_device",
        ProgramType::CgroupDevice,
        |case| {
            probe::prog_type(ProgramType::CgroupDevice)?;
            let rdev = std::fs::metadata(DENIED).or_error("stat /dev/null")?.rdev();
            let (major, minor) = (libc::major(rdev), libc::minor(rdev));
            case.detail("denied_device", format!("{DENIED} {major}:{minor}"));

            let mut object = MaybeUninit::uninit();
            let mut open = CgroupDeviceSkelBuilder::default().open(&mut object)?;
            let rodata = open
                .maps
                .rodata_data
                .as_deref_mut()
                .expect("the object has a .rodata section");
            rodata.denied_major = major;
            rodata.denied_minor = minor;
            let skel = case.load(open)?;

            let cg = Cgroup::new()?;
            let _link = skel
                .progs
                .deny_one_char_device
                .attach_cgroup(cg.as_fd().as_raw_fd())?;

            let report =
                client::run_json(cg.command(client::python(OPEN_DEVICES, [DENIED, ALLOWED])))?;
            case.detail("client", &report);
            assert_eq!(
                report[DENIED]["errno"], "EPERM",
                "opening {DENIED} inside the cgroup: {}",
                report[DENIED]
            );
            assert_eq!(
                report[ALLOWED]["errno"],
                serde_json::Value::Null,
                "opening {ALLOWED} inside the cgroup: {}",
                report[ALLOWED]
            );
            assert_eq!(report[ALLOWED]["read"], "00000000");

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
            assert!(bss.allowed >= 1, "the program saw no allowed open");
            Ok(())
        },
    );
}
