//! What the tree's loader asks of the running kernel before it runs a test: whether programs are
//! JIT-compiled (`__load_if_JITed`), whether unprivileged tests can run (`get_unpriv_disabled`:
//! the sysctl, and CPU mitigations on, which some unprivileged expectations rely on), and the
//! test flags every load gets (`testing_prog_flags`: `BPF_F_TEST_RND_HI32`,
//! `BPF_F_TEST_REG_INVARIANTS` where the kernel takes them).

use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use libbpf_sys as sys;

const UNPRIV_SYSCTL: &str = "/proc/sys/kernel/unprivileged_bpf_disabled";

/// The running kernel as the tests see it.
#[derive(Clone, Debug)]
pub struct Facts {
    /// `net.core.bpf_jit_enable` is not 0.
    pub jit: bool,
    /// Why unprivileged tests are skipped here, if they are.
    pub unpriv_skipped: Option<String>,
    /// The flags every load gets.
    pub test_flags: u32,
    /// How long one load may take before it is interrupted and not judged.
    pub budget: std::time::Duration,
}

impl Facts {
    /// Probes the running kernel. In a VM (`vm`) a `kernel.unprivileged_bpf_disabled` of 2 (off
    /// until an admin allows it) is set to 0 first; on the host it is never touched. `config` is
    /// the kernel's build config when it is kept outside the kernel (the VMs' packages).
    pub fn probe(vm: bool, config: Option<&Path>, budget: std::time::Duration) -> Facts {
        if vm && read_trim(UNPRIV_SYSCTL).as_deref() == Some("2") {
            let _ = fs::write(UNPRIV_SYSCTL, "0");
        }
        Facts {
            jit: read_trim("/proc/sys/net/core/bpf_jit_enable").is_some_and(|v| v != "0"),
            unpriv_skipped: unpriv_skipped(config),
            test_flags: test_flags(),
            budget,
        }
    }
}

fn read_trim(path: &str) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

/// `get_unpriv_disabled`: the sysctl set, or mitigations off or unknown.
fn unpriv_skipped(config: Option<&Path>) -> Option<String> {
    match read_trim(UNPRIV_SYSCTL).as_deref() {
        Some("0") => {}
        Some(v) => return Some(format!("kernel.unprivileged_bpf_disabled is {v}")),
        None => return Some(format!("{UNPRIV_SYSCTL} cannot be read")),
    }
    let cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
    if cmdline.split_whitespace().any(|w| w == "mitigations=off") {
        return Some("the kernel runs with mitigations=off".into());
    }
    match kernel_config(config) {
        None => Some(
            "CPU mitigations cannot be determined (no kernel config), as the tree's loader then \
             does"
                .into(),
        ),
        Some((text, _)) if text.lines().any(|l| l == "CONFIG_CPU_MITIGATIONS=y") => None,
        Some((_, from)) => Some(format!(
            "CPU mitigations are off in this kernel's build (no CONFIG_CPU_MITIGATIONS=y in {})",
            from.display()
        )),
    }
}

/// The kernel's build config: `config` (kept from its package), `/boot/config-<release>` or
/// `/proc/config.gz`.
fn kernel_config(config: Option<&Path>) -> Option<(String, PathBuf)> {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let boot = PathBuf::from(format!("/boot/config-{release}"));
    for path in config.into_iter().map(Path::to_owned).chain([boot]) {
        if let Ok(text) = fs::read_to_string(&path) {
            return Some((text, path));
        }
    }
    let gz = PathBuf::from("/proc/config.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(fs::File::open(&gz).ok()?)
        .read_to_string(&mut text)
        .ok()?;
    Some((text, gz))
}

/// `testing_prog_flags`: each test flag the kernel accepts on a trivial program.
fn test_flags() -> u32 {
    const FLAGS: [u32; 2] = [sys::BPF_F_TEST_RND_HI32, sys::BPF_F_TEST_REG_INVARIANTS];
    use loader::insn::{ALU64, EXIT, Insn, JMP, K, MOV};
    let insns = [
        Insn::new(ALU64 | MOV | K, 0, 0, 0, 0),
        Insn::new(JMP | EXIT, 0, 0, 0, 0),
    ]
    .map(Insn::to_bpf);
    FLAGS
        .into_iter()
        .filter(|&flag| {
            let mut load =
                loader::prog::Load::new(sys::BPF_PROG_TYPE_SOCKET_FILTER, c"GPL", &insns);
            load.name = Some(c"flag-test");
            load.flags = flag;
            loader::prog::load(&load, &mut []).fd.is_ok()
        })
        .fold(0, |acc, f| acc | f)
}
