//! Whether the verifier holds programs of users without CAP_PERFMON to its Spectre v1 rules
//! (no variable-offset stack pointers, pointer arithmetic kept in bounds and masked). A kernel
//! whose CPU mitigations are off lets them bypass these since 6.7 (bc5bc309db45 "bpf: Inherit
//! system settings for CPU security mitigations": `bypass_spec_v1` is
//! `cpu_mitigations_off() || CAP_PERFMON`), so an unprivileged rule can depend on the build and
//! the command line, not the release alone.

use testkit::floors::Version;
use testkit::{CaseError, CaseResult, Kernel};

/// Whether `cpu_mitigations_off()` is false on the running kernel (of release `version`), so the
/// verifier enforces its Spectre v1 rules on unprivileged programs.
pub fn v1_enforced(version: Version) -> CaseResult<bool> {
    if !version.at_least(Version::parse("6.7").expect("a release")) {
        return Ok(true);
    }
    let cmdline = std::fs::read_to_string("/proc/cmdline")
        .map_err(|e| CaseError::Error(anyhow::anyhow!("reading /proc/cmdline: {e}")))?;
    Ok(!(built_without_mitigations(version)? || mitigations_off(&cmdline)))
}

/// Since 6.9 (ce0abef6a1d5 "cpu: Ignore "mitigations" kernel parameter if CPU_MITIGATIONS=n")
/// a kernel built without CONFIG_CPU_MITIGATIONS has them off whatever the command line says
/// (the source-built 6.12: tinyconfig leaves it unset).
fn built_without_mitigations(version: Version) -> CaseResult<bool> {
    if !version.at_least(Version::parse("6.9").expect("a release")) {
        return Ok(false);
    }
    let kernel = Kernel::current();
    if !kernel.config_known() {
        return Err(CaseError::Error(anyhow::anyhow!(
            "whether this kernel has CPU mitigations (CONFIG_CPU_MITIGATIONS) cannot be told: its \
             build config was not found ({})",
            kernel.build_config().searched.join(", ")
        )));
    }
    Ok(kernel.config("CONFIG_CPU_MITIGATIONS").is_none())
}

/// `mitigations=off` on the command line (the last `mitigations=` before init's arguments wins,
/// as for any early parameter; attack vector controls may follow a comma).
fn mitigations_off(cmdline: &str) -> bool {
    cmdline
        .split_whitespace()
        .take_while(|arg| *arg != "--")
        .filter_map(|arg| arg.strip_prefix("mitigations="))
        .last()
        .is_some_and(|value| value.split(',').next() == Some("off"))
}
