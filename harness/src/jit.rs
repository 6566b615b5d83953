//! Whether the kernel JIT-compiles programs (`net.core.bpf_jit_enable`), and the refusals only the
//! interpreter makes: with the JIT off (the interpreter column of a source-built kernel), the
//! verifier refuses kfunc calls, callbacks and extension programs, a limit of the execution engine the machine was
//! set to, judged through `platform.bpf_jit_disabled`.

use crate::floors;
use crate::outcome::CaseError;

const SYSCTL: &str = "/proc/sys/net/core/bpf_jit_enable";

/// The verifier's refusals of what only JITed programs may do.
const JIT_ONLY: &[&str] = &[
    "JIT is required for calling kernel function",
    "callbacks are not allowed in non-JITed programs",
    "Extension programs should be JITed",
];

/// Whether programs are JIT-compiled (a kernel without `CONFIG_BPF_JIT` has no sysctl: no).
pub fn enabled() -> bool {
    std::fs::read_to_string(SYSCTL).is_ok_and(|v| v.trim() != "0")
}

/// `unsupported` when the verifier refused with `message` because the JIT is off.
pub fn refused(message: &str) -> Option<CaseError> {
    let id = "platform.bpf_jit_disabled";
    let jit_only = JIT_ONLY.iter().any(|m| message.contains(m));
    (jit_only && !floors::has(id, enabled())).then(|| {
        floors::missing(
            id,
            format!("net.core.bpf_jit_enable is 0 and the verifier said: {message}"),
        )
    })
}
