//! `BPF_PROG_TEST_RUN` answers shared by the test-run tables: which errors mean the kernel has no
//! test run for a type (judged against its floor, `test_run.<type>`), and the check that a
//! traffic-only type still has none.

use libbpf_rs::{ProgramInput, ProgramMut, ProgramOutput};

use crate::{Case, CaseError, CaseResult, floors};

/// `ENOTSUPP` (kernel-internal, 524): the program type has no test-run operation.
const ENOTSUPP: i32 = 524;

/// Maps a failed test run of a program of type `ty` (the kernel's name: `socket_filter`,
/// `sched_cls`, …): `ENOTSUPP`/`EOPNOTSUPP` (the kernel cannot run this type) is the floor's
/// verdict on `test_run.<ty>`, anything else a failure.
pub fn error(ty: &str, e: libbpf_rs::Error) -> CaseError {
    let text = format!("{e:#}");
    if text.contains(&format!("os error {ENOTSUPP}"))
        || text.contains(&format!("os error {}", libc::EOPNOTSUPP))
    {
        floors::missing(
            &format!("test_run.{ty}"),
            format!("BPF_PROG_TEST_RUN of a {ty} program answered {text}"),
        )
    } else {
        CaseError::Fail(anyhow::anyhow!("BPF_PROG_TEST_RUN failed: {text}"))
    }
}

/// Runs `prog`, of type `ty`, once with `input`; failures as [`error`]. The fault switch
/// (`BPFCONF_FAULT_MISSING=test_run.<ty>`) stands in for an `ENOTSUPP`.
pub fn run<'dat>(
    ty: &str,
    prog: &ProgramMut<'_>,
    input: ProgramInput<'dat>,
) -> CaseResult<ProgramOutput<'dat>> {
    let id = format!("test_run.{ty}");
    if !floors::has(&id, true) {
        return Err(floors::missing(&id, "not run"));
    }
    prog.test_run(input).map_err(|e| error(ty, e))
}

/// Runs `prog` once on `data` for a type the kernel has no test run for: records the kernel's
/// answer as the detail `test_run` and fails unless it is `ENOTSUPP` — if the kernel ever runs the
/// type, it should get test-run cases.
pub fn assert_not_implemented(
    case: &mut Case,
    prog: &libbpf_rs::ProgramMut<'_>,
    data: &[u8],
) -> CaseResult {
    let input = ProgramInput {
        data_in: Some(data),
        ..Default::default()
    };
    let answer = match prog.test_run(input) {
        Ok(out) => format!("ran, returned {}", out.return_value),
        Err(e) => format!("{e}"),
    };
    case.detail("test_run", &answer);
    if answer.contains(&format!("os error {ENOTSUPP}")) {
        Ok(())
    } else {
        Err(CaseError::Fail(anyhow::anyhow!(
            "BPF_PROG_TEST_RUN on {}: {answer} (expected ENOTSUPP, {ENOTSUPP})",
            prog.name().to_string_lossy()
        )))
    }
}
