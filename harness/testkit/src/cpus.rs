//! The CPUs as per-CPU maps see them. A per-CPU value read or written from user space is one slot
//! per *possible* CPU (`/sys/devices/system/cpu/possible`), in CPU order, each slot the value size
//! rounded up to 8 bytes; a program can only be run on an *online* CPU. Expectations derive from
//! these lists, never from a count assumed for the machine (one vCPU in the emulated VMs, two on
//! the host).

use crate::outcome::{CaseResult, OrError};

/// The possible CPUs, ascending: one per-CPU slot each.
pub fn possible() -> CaseResult<Vec<u32>> {
    read("possible")
}

/// The online CPUs, ascending: where a program can run.
pub fn online() -> CaseResult<Vec<u32>> {
    read("online")
}

/// The size of one CPU's slot in a per-CPU value of `value_size` bytes (8-byte rounded).
pub fn slot_size(value_size: usize) -> usize {
    value_size.next_multiple_of(8)
}

/// Pins the calling thread to `cpu` (for a thread of its own: the old affinity is not restored;
/// [`crate::observe::OneCpu`] restores it). Allocates nothing: a forked child may call it.
pub fn pin_thread(cpu: usize) -> nix::Result<()> {
    let mut only = nix::sched::CpuSet::new();
    only.set(cpu)?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &only)
}

fn read(list: &str) -> CaseResult<Vec<u32>> {
    let path = format!("/sys/devices/system/cpu/{list}");
    let text = std::fs::read_to_string(&path).or_error(&format!("reading {path}"))?;
    parse(&text).ok_or_else(|| {
        crate::CaseError::Error(anyhow::anyhow!("{path} is not a CPU list: {text:?}"))
    })
}

/// A sysfs CPU list (`0-3,5,7-8`) as its CPUs.
pub fn parse(text: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    for range in text.trim().split(',').filter(|r| !r.is_empty()) {
        let (first, last): (u32, u32) = match range.split_once('-') {
            Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
            None => {
                let cpu = range.parse().ok()?;
                (cpu, cpu)
            }
        };
        cpus.extend(first..=last);
    }
    (!cpus.is_empty()).then_some(cpus)
}

/// Whether the CPU is emulated by QEMU's TCG: the hypervisor signature of CPUID leaf 0x40000000
/// is `TCGTCGTCGTCG`.
pub fn emulated() -> bool {
    hypervisor_signature().is_some_and(|sig| sig == *b"TCGTCGTCGTCG")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_slots() {
        assert_eq!(parse("0\n"), Some(vec![0]));
        assert_eq!(parse("0-3,5,7-8\n"), Some(vec![0, 1, 2, 3, 5, 7, 8]));
        assert_eq!(parse(""), None);
        assert_eq!(parse("x"), None);
        assert_eq!((slot_size(4), slot_size(8), slot_size(12)), (8, 8, 16));
    }
}
