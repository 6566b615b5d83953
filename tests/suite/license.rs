//! Licenses: the kernel lets only GPL-compatible programs call GPL-only helpers.
//!
//! One kprobe program, written as instructions (`testkit::insn`), calls `bpf_probe_read_kernel`
//! (GPL-only) and is loaded under several license strings: "GPL" and "Dual BSD/GPL" load, and the
//! kernel marks them GPL-compatible (`bpf_prog_info.gpl_compatible`); "Proprietary" is refused with
//! the kernel's reason. A program that calls no GPL-only helper loads under "Proprietary" too, and
//! is marked not GPL-compatible. Each load's whole verifier log is snapshotted per kernel.

use libbpf_rs::ProgramType;
use libbpf_rs::libbpf_sys::{BPF_FUNC_ktime_get_ns, BPF_FUNC_probe_read_kernel};
use rstest::rstest;
use testkit::insn::{Asm, Reg::*};
use testkit::raw_load::{self, RawProgram};
use testkit::{Case, LogLevel, probe};

/// `bpf_probe_read_kernel(fp - 8, 8, NULL)`; returns 0.
fn reads_kernel_memory() -> Asm {
    Asm::new()
        .mov64_reg(R1, R10)
        .add64_imm(R1, -8)
        .mov64_imm(R2, 8)
        .mov64_imm(R3, 0)
        .call(BPF_FUNC_probe_read_kernel)
        .mov64_imm(R0, 0)
        .exit()
}

/// `bpf_ktime_get_ns()`, which any license may call; returns 0.
fn reads_the_clock() -> Asm {
    Asm::new()
        .call(BPF_FUNC_ktime_get_ns)
        .mov64_imm(R0, 0)
        .exit()
}

/// A GPL-only helper (bpf_probe_read_kernel) under each license: refused only under a non-GPL one.
#[rstest]
#[case::gpl("gpl_helper_under_gpl", "GPL", true)]
#[case::dual_bsd_gpl("gpl_helper_under_dual_bsd_gpl", "Dual BSD/GPL", true)]
#[case::proprietary_refused("gpl_helper_under_proprietary_refused", "Proprietary", false)]
fn gpl_helper_under(#[case] name: &str, #[case] license: &str, #[case] loads: bool) {
    by_license(name, license, reads_kernel_memory, loads);
}

/// A helper any program may call (bpf_ktime_get_ns) loads under a proprietary license.
#[test]
fn plain_helper_under_proprietary() {
    by_license(
        "plain_helper_under_proprietary",
        "Proprietary",
        reads_the_clock,
        true,
    );
}

fn by_license(name: &str, license: &str, program: fn() -> Asm, loads: bool) {
    Case::run(ProgramType::Kprobe, |case| {
        probe::prog_type(ProgramType::Kprobe)?;
        let raw = RawProgram::new(name, ProgramType::Kprobe, program().to_bpf())
            .license(license)
            .log_level(LogLevel::Verbose);
        let load = case.load_raw(&raw);
        let outcome = &load.outcome;
        if !loads {
            assert!(
                !outcome.loaded,
                "a {license:?} program calling a GPL-only helper was loaded"
            );
            assert_eq!(outcome.errno.as_deref(), Some("EINVAL"));
            let message = outcome.message.as_deref().unwrap_or_default();
            assert!(
                message.contains(
                    "cannot call GPL-restricted function from non-GPL compatible program"
                ),
                "unexpected reason: {message}"
            );
            return Ok(());
        }
        let info = raw_load::prog_info(load.fd()?)?;
        let gpl = info.gpl_compatible() != 0;
        case.detail("gpl_compatible", gpl);
        let expected = license.contains("GPL");
        assert_eq!(
            gpl, expected,
            "the kernel's gpl_compatible flag for license {license:?}"
        );
        Ok(())
    });
}
