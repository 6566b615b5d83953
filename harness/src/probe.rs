//! Feature probes: each returns `Ok` when the running kernel has the feature and otherwise the
//! `unsupported` outcome, with the reason and the probe that proved it.

use std::path::Path;

use libbpf_rs::ProgramType;
use libbpf_rs::libbpf_sys::bpf_func_id;

use crate::case::prog_type_name;
use crate::kernel::Kernel;
use crate::outcome::{CaseError, CaseResult};

/// The kernel can load programs of type `ty` (libbpf's probe loads a minimal one).
pub fn prog_type(ty: ProgramType) -> CaseResult {
    match ty.is_supported() {
        Ok(true) => Ok(()),
        Ok(false) => Err(CaseError::unsupported(format!(
            "program type {} is not supported by kernel {} (libbpf_probe_bpf_prog_type){}",
            prog_type_name(ty),
            Kernel::current().release,
            config_hint(ty)
        ))),
        Err(e) => Err(CaseError::Error(anyhow::anyhow!(
            "probing program type {}: {e:#}",
            prog_type_name(ty)
        ))),
    }
}

/// Programs of type `ty` may call `helper` (`BPF_FUNC_…`, named `name` in the reason).
pub fn helper(ty: ProgramType, helper: bpf_func_id, name: &str) -> CaseResult {
    prog_type(ty)?;
    match ty.is_helper_supported(helper) {
        Ok(true) => Ok(()),
        Ok(false) => Err(CaseError::unsupported(format!(
            "helper {name} is not available to {} programs on kernel {} (libbpf_probe_bpf_helper)",
            prog_type_name(ty),
            Kernel::current().release
        ))),
        Err(e) => Err(CaseError::Error(anyhow::anyhow!(
            "probing helper {name}: {e:#}"
        ))),
    }
}

/// The tracepoint `category/name` exists (tracefs `events/<category>/<name>`).
pub fn tracepoint(category: &str, name: &str) -> CaseResult {
    let tracefs = crate::mounts::tracefs()?;
    if tracefs.join("events").join(category).join(name).is_dir() {
        return Ok(());
    }
    Err(CaseError::unsupported(format!(
        "tracepoint {category}/{name} does not exist on kernel {} ({}/events/{category}/{name} is missing)",
        Kernel::current().release,
        tracefs.display()
    )))
}

/// The kernel can attach kprobes: `CONFIG_KPROBES=y` when the config is readable, else the kprobe
/// PMU (`/sys/bus/event_source/devices/kprobe`, 4.17+) or tracefs `kprobe_events` exists.
pub fn kprobes() -> CaseResult {
    config_builtin("CONFIG_KPROBES")?;
    let pmu = Path::new("/sys/bus/event_source/devices/kprobe");
    if pmu.exists() || crate::mounts::tracefs()?.join("kprobe_events").exists() {
        return Ok(());
    }
    Err(CaseError::unsupported(format!(
        "kernel {} cannot attach kprobes: no kprobe PMU ({}) and no tracefs kprobe_events",
        Kernel::current().release,
        pmu.display()
    )))
}

/// A kernel config option is `y` (when the config is readable; otherwise the case goes on and the
/// load or attach tells).
pub fn config_builtin(option: &str) -> CaseResult {
    let kernel = Kernel::current();
    match kernel.config(option) {
        Some("y") => Ok(()),
        _ if !kernel.config_known() => Ok(()),
        value => Err(CaseError::unsupported(format!(
            "{option} is {} in the config of kernel {}",
            value.map_or_else(|| "not set".to_owned(), |v| format!("={v}")),
            kernel.release
        ))),
    }
}

/// A kernel config option is `y` or `m`: for features a module may provide (qdiscs, classifiers,
/// actions). When the config is unreadable the case goes on and the attach tells.
pub fn config_enabled(option: &str) -> CaseResult {
    let kernel = Kernel::current();
    match kernel.config(option) {
        Some("y" | "m") => Ok(()),
        _ if !kernel.config_known() => Ok(()),
        value => Err(CaseError::unsupported(format!(
            "{option} is {} in the config of kernel {}",
            value.map_or_else(|| "not set".to_owned(), |v| format!("={v}")),
            kernel.release
        ))),
    }
}

/// The config option that gates a program type, named in the reason when the config shows it off.
fn config_hint(ty: ProgramType) -> String {
    let option = match ty {
        ProgramType::LircMode2 => "CONFIG_BPF_LIRC_MODE2",
        ProgramType::LwtSeg6local => "CONFIG_IPV6_SEG6_BPF",
        ProgramType::CgroupDevice | ProgramType::CgroupSkb | ProgramType::CgroupSock => {
            "CONFIG_CGROUP_BPF"
        }
        ProgramType::Kprobe | ProgramType::Tracepoint | ProgramType::PerfEvent => {
            "CONFIG_BPF_EVENTS"
        }
        _ => return String::new(),
    };
    match Kernel::current().config(option) {
        Some(v) => format!("; {option}={v}"),
        None if Kernel::current().config_known() => format!("; {option} not set"),
        None => String::new(),
    }
}

/// Whether `path` exists, as a probe: `unsupported` naming `what` when it does not.
pub fn path_exists(path: &Path, what: &str) -> CaseResult {
    if path.exists() {
        Ok(())
    } else {
        Err(CaseError::unsupported(format!(
            "{what}: {} does not exist",
            path.display()
        )))
    }
}

/// The CPU is not emulated by QEMU's TCG (the hypervisor signature of CPUID leaf 0x40000000 is not
/// `TCGTCGTCGTCG`). TCG does not make kernel-text patching safe across vCPUs: a tracepoint
/// attached or detached while another vCPU runs through its call site can crash the guest (int3
/// oops, soft lockup), which real CPUs and KVM guests do not.
pub fn cpu_not_emulated() -> CaseResult {
    match hypervisor_signature() {
        Some(sig) if sig == *b"TCGTCGTCGTCG" => Err(CaseError::unsupported(
            "the CPU is emulated by QEMU TCG (CPUID hypervisor signature TCGTCGTCGTCG), which does \
             not make live kernel-text patching safe across vCPUs; needs KVM or real hardware",
        )),
        _ => Ok(()),
    }
}

/// The 12-byte hypervisor signature of CPUID leaf 0x40000000, when the CPU reports a hypervisor.
#[cfg(target_arch = "x86_64")]
fn hypervisor_signature() -> Option<[u8; 12]> {
    use std::arch::x86_64::__cpuid;
    // Leaf 1 ECX bit 31 says whether the hypervisor leaves exist.
    let hypervisor_present = __cpuid(1).ecx & (1 << 31) != 0;
    if !hypervisor_present {
        return None;
    }
    let leaf = __cpuid(0x4000_0000);
    let mut sig = [0u8; 12];
    for (chunk, reg) in sig.chunks_mut(4).zip([leaf.ebx, leaf.ecx, leaf.edx]) {
        chunk.copy_from_slice(&reg.to_le_bytes());
    }
    Some(sig)
}

/// Other architectures: no signature read (QEMU's TCG signature is an x86 CPUID leaf).
#[cfg(not(target_arch = "x86_64"))]
fn hypervisor_signature() -> Option<[u8; 12]> {
    None
}
