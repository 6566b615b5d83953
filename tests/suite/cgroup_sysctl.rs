//! cgroup_sysctl (`programs/src/bpf/cgroup_sysctl.bpf.c`): a sysctl filter on the test's own
//! cgroup v2 child.
//!
//! The sysctl is `net.ipv4.ip_default_ttl` of a fresh network namespace (each namespace has its
//! own), so the host's value is never touched: the test checks the host's value is the same
//! after the case. A child forked into the cgroup and the namespace makes one `read(2)` or
//! `write(2)` per access, in this order:
//! - reads `net.ipv4.ip_forward`: passes (the program only filters the one sysctl) and shows the
//!   value the test reads outside the cgroup;
//! - reads `ip_default_ttl`: fails with EPERM;
//! - writes `WRITTEN` to it: succeeds, but the namespace's value afterwards, read by the test
//!   outside the cgroup, is the program's `NEW_VALUE`.
//!
//! Outside the cgroup (the test's thread inside the namespace) the same sysctl reads normally and
//! a write keeps its own value. The program's counters saw exactly the child's three accesses
//! (one denied read, one rewritten write carrying `WRITTEN`, one other sysctl passed): the test's
//! own accesses are not in the cgroup.
//!
//! On 5.18+ kernels without 2566c3b24219 ("bpf: Restore sysctl new-value from 1 to 0", June 2026)
//! the kernel drops the program's new value (the helper returns 0, the program allows the write,
//! the old value stays): a `known_bug` of the 6.1 and 6.18 builds in kernels.toml. The record's
//! `rewrite` detail holds the evidence either way: what the child wrote, what the program saw and
//! what bpf_sysctl_set_new_value returned, whether it allowed the write, what the write returned
//! and what the namespace holds afterwards.
//!
//! No test-run cases: the kernel does not implement BPF_PROG_TEST_RUN for this program type.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::ProgramType;
use libbpf_rs::libbpf_sys::{
    BPF_FUNC_sysctl_get_name, BPF_FUNC_sysctl_get_new_value, BPF_FUNC_sysctl_set_new_value,
};
use libbpf_rs::skel::SkelBuilder;
use nix::errno::Errno;
use programs::cgroup_sysctl::CgroupSysctlSkelBuilder;
use testkit::child::succeeded;
use testkit::observe::volatile;
use testkit::{Case, CaseError, CaseResult, Cgroup, NetNs, OrError, child, probe};

/// The filtered sysctl (per network namespace).
const FILTERED: &str = "/proc/sys/net/ipv4/ip_default_ttl";
/// A sysctl the program passes.
const OTHER: &str = "/proc/sys/net/ipv4/ip_forward";
/// What the child writes to [`FILTERED`].
const WRITTEN: &str = "33";
/// What the program stores instead.
const NEW_VALUE: &str = "77";
/// What the test itself writes to [`FILTERED`] from outside the cgroup.
const OUTSIDE_WRITE: &str = "44";

/// The bytes (at most 32) one read gave, as plain data for the child's report.
#[derive(Clone, Copy)]
struct Text {
    len: usize,
    bytes: [u8; 32],
}

impl Text {
    fn as_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.bytes[..self.len])
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// One `read(2)` of `path`.
fn read_once(path: &str) -> Result<Text, Errno> {
    let mut file = child::errno(File::open(path))?;
    let mut bytes = [0; 32];
    let len = child::errno(file.read(&mut bytes))?;
    Ok(Text { len, bytes })
}

/// One `write(2)` of `value` to `path`; the count the kernel returned.
fn write_once(path: &str, value: &str) -> Result<usize, Errno> {
    let mut file = child::errno(OpenOptions::new().write(true).open(path))?;
    child::errno(file.write(value.as_bytes()))
}

/// What the child's accesses gave.
#[derive(Clone, Copy, Debug)]
struct Accessed {
    other_read: Result<Text, Errno>,
    filtered_read: Result<Text, Errno>,
    filtered_write: Result<usize, Errno>,
}

fn access_sysctls() -> Accessed {
    Accessed {
        other_read: read_once(OTHER),
        filtered_read: read_once(FILTERED),
        filtered_write: write_once(FILTERED, WRITTEN),
    }
}

/// A sysctl's value as the calling thread's namespace has it, without the trailing newline.
fn value(path: &str) -> CaseResult<String> {
    let text = std::fs::read_to_string(path).or_error("reading a sysctl outside the cgroup")?;
    Ok(text.trim_end().to_owned())
}

#[test]
fn denies_read_and_rewrites_write() {
    Case::run(ProgramType::CgroupSysctl, |case| {
        for (helper, name) in [
            (BPF_FUNC_sysctl_get_name, "bpf_sysctl_get_name"),
            (BPF_FUNC_sysctl_get_new_value, "bpf_sysctl_get_new_value"),
            (BPF_FUNC_sysctl_set_new_value, "bpf_sysctl_set_new_value"),
        ] {
            probe::helper(ProgramType::CgroupSysctl, helper, name)?;
        }
        let host_before = value(FILTERED)?;
        let ns = NetNs::new()?;

        let mut object = MaybeUninit::uninit();
        let mut open = CgroupSysctlSkelBuilder::default().open(&mut object)?;
        let rodata = open
            .maps
            .rodata_data
            .as_deref_mut()
            .expect("the object has a .rodata section");
        for (slot, byte) in rodata.new_value.iter_mut().zip(NEW_VALUE.bytes()) {
            *slot = byte as _;
        }
        rodata.new_value_len = NEW_VALUE.len() as u32;
        let skel = case.load(open)?;
        let cg = Cgroup::new()?;
        let _link = skel
            .progs
            .sysctl_filter
            .attach_cgroup(cg.as_fd().as_raw_fd())?;

        let (other_outside, ttl_outside) = {
            let _inside = ns.enter()?;
            (value(OTHER)?, value(FILTERED)?)
        };
        let accessed = child::in_cgroup(&cg).netns(&ns).run(access_sysctls)?;
        case.detail("child", format!("{accessed:?}"));
        let (ttl_after_child, ttl_after_outside_write) = {
            let _inside = ns.enter()?;
            let after_child = value(FILTERED)?;
            std::fs::write(FILTERED, OUTSIDE_WRITE).map_err(|e| {
                CaseError::Fail(anyhow::anyhow!(
                    "writing {FILTERED} outside the cgroup: {e}"
                ))
            })?;
            (after_child, value(FILTERED)?)
        };
        case.detail(
            "outside",
            serde_json::json!({
                "ip_forward": other_outside, "ttl_before": ttl_outside,
                "ttl_after_child_write": ttl_after_child,
                "ttl_after_own_write": ttl_after_outside_write,
            }),
        );

        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
        let counts = (
            volatile(&bss.reads_denied),
            volatile(&bss.writes_rewritten),
            volatile(&bss.others_passed),
        );
        case.detail("denied_rewritten_passed", counts);
        let written: Vec<u8> = volatile(&bss.written)
            .iter()
            .map(|&c| c as u8)
            .take_while(|&c| c != 0)
            .collect();
        let written = String::from_utf8_lossy(&written).into_owned();
        let set_ret = volatile(
            &skel
                .maps
                .data_data
                .as_deref()
                .expect("the object has .data")
                .set_ret,
        );
        // The rewrite, whole: what the child wrote, what the program saw and answered, what the
        // write returned, and what the namespace holds afterwards.
        case.detail(
            "rewrite",
            serde_json::json!({
                "wrote": WRITTEN, "program_saw": written,
                "set_new_value_returned": set_ret,
                "program_allowed": counts.1 == 1, "new_value": NEW_VALUE,
                "write_returned": format!("{:?}", accessed.filtered_write),
                "read_back": ttl_after_child,
            }),
        );

        let other = succeeded(&format!("reading {OTHER}"), accessed.other_read)?;
        assert_eq!(
            other.as_str().trim_end(),
            other_outside,
            "{OTHER} read inside the cgroup (passed by the program)"
        );
        assert_eq!(
            accessed.filtered_read.map(|t| t.as_str().into_owned()),
            Err(Errno::EPERM),
            "reading {FILTERED} inside the cgroup"
        );
        succeeded(&format!("writing {FILTERED}"), accessed.filtered_write)?;
        assert_ne!(
            ttl_outside, NEW_VALUE,
            "the namespace's value before the child's write (premise)"
        );
        assert_eq!(
            ttl_after_child, NEW_VALUE,
            "{FILTERED} after the child wrote {WRITTEN}: the program's value"
        );
        assert_eq!(
            ttl_after_outside_write, OUTSIDE_WRITE,
            "{FILTERED} after a write from outside the cgroup"
        );

        assert_eq!(
            counts,
            (1, 1, 1),
            "the program's counters (denied reads, rewritten writes, other sysctls passed)"
        );
        assert_eq!(
            written, WRITTEN,
            "the value the program saw the child write"
        );
        assert_eq!(set_ret, 0, "bpf_sysctl_set_new_value's return");
        assert_eq!(
            value(FILTERED)?,
            host_before,
            "the host's {FILTERED} after the case"
        );
        Ok(())
    });
}
