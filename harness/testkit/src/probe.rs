//! Feature probes: each returns `Ok` when the running kernel has the feature and otherwise what
//! [`floors::missing`] makes of its absence: `unsupported` with the probe that proved it, or `fail`
//! (`error`) where the kernel is past the feature's floor (or its config cannot be read).

use std::path::Path;

use libbpf_rs::libbpf_sys::bpf_func_id;
use libbpf_rs::{MapType, ProgramType};

use crate::floors;
use crate::kernel::{Kernel, prog_type_name};
use crate::map_ops::{self, MapAttrs};
use crate::outcome::{CaseError, CaseResult};

/// The kernel can load programs of type `ty` (libbpf's probe loads a minimal one).
pub fn prog_type(ty: ProgramType) -> CaseResult {
    let name = prog_type_name(ty);
    let id = format!("prog_type.{name}");
    match ty.is_supported() {
        Ok(supported) if floors::has(&id, supported) => Ok(()),
        Ok(_) => Err(floors::missing(
            &id,
            format!(
                "kernel {} does not load {name} programs (libbpf_probe_bpf_prog_type)",
                Kernel::current().release
            ),
        )),
        Err(e) => Err(CaseError::Error(anyhow::anyhow!(
            "probing program type {name}: {e:#}"
        ))),
    }
}

/// Programs of type `ty` may call `helper` (`BPF_FUNC_…`, named `name` in the reason).
pub fn helper(ty: ProgramType, helper: bpf_func_id, name: &str) -> CaseResult {
    prog_type(ty)?;
    let id = format!("helper.{name}");
    match ty.is_helper_supported(helper) {
        Ok(supported) if floors::has(&id, supported) => Ok(()),
        Ok(_) => Err(floors::missing(
            &id,
            format!(
                "kernel {} does not let {} programs call {name} (libbpf_probe_bpf_helper)",
                Kernel::current().release,
                prog_type_name(ty)
            ),
        )),
        Err(e) => Err(CaseError::Error(anyhow::anyhow!(
            "probing helper {name}: {e:#}"
        ))),
    }
}

/// The kernel can create maps of type `ty` (libbpf's probe creates a minimal one), feature `id`
/// (`map_type.<name>`).
pub fn map_type(ty: MapType, id: &str) -> CaseResult {
    probe_map_type(ty as u32, id, format!("{ty:?} maps"), format!("{ty:?}"))
}

/// [`map_type`] of the UAPI type `ty` (`BPF_MAP_TYPE_…`, for types libbpf-rs's `MapType` does not
/// name).
pub fn map_type_id(ty: u32, id: &str) -> CaseResult {
    probe_map_type(ty, id, format!("maps of type {ty}"), ty.to_string())
}

/// `libbpf_probe_bpf_map_type` of `ty`, named `maps` in the reason and `ty_name` in an error.
fn probe_map_type(ty: u32, id: &str, maps: String, ty_name: String) -> CaseResult {
    // SAFETY: libbpf's probe takes the type by value and no options (NULL is allowed).
    let answer = unsafe { libbpf_rs::libbpf_sys::libbpf_probe_bpf_map_type(ty, std::ptr::null()) };
    match answer {
        0 | 1 if floors::has(id, answer == 1) => Ok(()),
        0 | 1 => Err(floors::missing(
            id,
            format!(
                "kernel {} does not create {maps} (libbpf_probe_bpf_map_type)",
                Kernel::current().release
            ),
        )),
        e => Err(CaseError::Error(anyhow::anyhow!(
            "probing map type {ty_name}: {}",
            std::io::Error::from_raw_os_error(-e)
        ))),
    }
}

/// The kernel creates a map with `attrs` (`BPF_MAP_CREATE` itself, for what libbpf's probe cannot
/// ask: a map type libbpf does not know, a map flag), feature `id`.
pub fn map_created(id: &str, attrs: MapAttrs) -> CaseResult {
    match map_ops::create(attrs).map(drop) {
        Ok(()) if floors::has(id, true) => Ok(()),
        answer => Err(floors::missing(
            id,
            format!(
                "kernel {} answered {} to BPF_MAP_CREATE of {attrs:?}",
                Kernel::current().release,
                answer.err().unwrap_or_else(|| "ok".into())
            ),
        )),
    }
}

/// The kernel creates arena maps (`map_type.arena`). `EPERM` to this privileged process is the
/// machine's kernel build refusing it (`platform.arena_denied`), not a kernel without the type
/// (which answers `EINVAL`).
pub fn arena() -> CaseResult {
    let attrs = MapAttrs {
        map_type: libbpf_rs::libbpf_sys::BPF_MAP_TYPE_ARENA,
        max_entries: 1,
        map_flags: libbpf_rs::libbpf_sys::BPF_F_MMAPABLE,
        ..Default::default()
    };
    match map_ops::create(attrs) {
        Err(e) if e == "EPERM" => Err(floors::missing(
            "platform.arena_denied",
            format!(
                "kernel {} answered EPERM to BPF_MAP_CREATE of an arena",
                Kernel::current().release
            ),
        )),
        _ => map_created("map_type.arena", attrs),
    }
}

/// The tracepoint `category/name` exists (tracefs `events/<category>/<name>`).
pub fn tracepoint(category: &str, name: &str) -> CaseResult {
    let tracefs = crate::mounts::tracefs()?;
    let dir = tracefs.join("events").join(category).join(name);
    if floors::has(&format!("tracepoint.{category}/{name}"), dir.is_dir()) {
        return Ok(());
    }
    Err(floors::missing(
        &format!("tracepoint.{category}/{name}"),
        format!("{} does not exist", dir.display()),
    ))
}

/// The kernel can attach kprobes: `CONFIG_KPROBES=y`, and the kprobe PMU
/// (`/sys/bus/event_source/devices/kprobe`, 4.17+) or tracefs `kprobe_events` exists.
pub fn kprobes() -> CaseResult {
    config_builtin("CONFIG_KPROBES")?;
    let pmu = Path::new("/sys/bus/event_source/devices/kprobe");
    let events = crate::mounts::tracefs()?.join("kprobe_events");
    if floors::has("pmu.kprobe", pmu.exists() || events.exists()) {
        return Ok(());
    }
    Err(floors::missing(
        "pmu.kprobe",
        format!(
            "neither the kprobe PMU ({}) nor {} exists",
            pmu.display(),
            events.display()
        ),
    ))
}

/// A kernel config option is `y`. Off is `unsupported`; an unreadable config is `error`.
pub fn config_builtin(option: &str) -> CaseResult {
    config(option, &["y"])
}

/// A kernel config option is `y` or `m`: for features a module may provide (qdiscs, classifiers,
/// actions). Off is `unsupported`; an unreadable config is `error`.
pub fn config_enabled(option: &str) -> CaseResult {
    config(option, &["y", "m"])
}

fn config(option: &str, accepted: &[&str]) -> CaseResult {
    let kernel = Kernel::current();
    let id = format!("kconfig.{option}");
    let value = kernel.config(option);
    if floors::has(&id, value.is_some_and(|v| accepted.contains(&v))) {
        return Ok(());
    }
    let said = match (value, kernel.build_config().source.as_deref()) {
        (Some(v), Some(from)) => format!(
            "{option}={v} in the config of kernel {} ({from})",
            kernel.release
        ),
        (None, Some(from)) => format!(
            "{option} is not set in the config of kernel {} ({from})",
            kernel.release
        ),
        (_, None) => format!("the config of kernel {} cannot be read", kernel.release),
    };
    Err(floors::missing(&id, said))
}

/// `file` exists, as the probe of feature `id`.
pub fn path(id: &str, file: &Path) -> CaseResult {
    if floors::has(id, file.exists()) {
        Ok(())
    } else {
        Err(floors::missing(
            id,
            format!("{} does not exist", file.display()),
        ))
    }
}

/// The CPU is not emulated by QEMU's TCG (the hypervisor signature of CPUID leaf 0x40000000 is not
/// `TCGTCGTCGTCG`). TCG does not make kernel-text patching safe across vCPUs: a tracepoint
/// attached or detached while another vCPU runs through its call site can crash the guest (int3
/// oops, soft lockup), which real CPUs and KVM guests do not.
pub fn cpu_not_emulated() -> CaseResult {
    if crate::cpus::emulated() {
        return Err(floors::missing(
            "platform.tcg_text_patching",
            "the CPU is emulated by QEMU TCG (CPUID hypervisor signature TCGTCGTCGTCG)",
        ));
    }
    Ok(())
}
