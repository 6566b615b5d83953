//! Resolving a syscall's kernel function for kprobes, as BCC's `get_syscall_fnname` does.
//!
//! `/proc/kallsyms` is read once per process: the kernel writes it out anew on every read (over a
//! second under emulation), and the entry functions of syscalls do not change while it runs.

use std::fs;
use std::sync::LazyLock;

use crate::outcome::{CaseError, CaseResult};

/// A syscall's entry function in the running kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyscallFn {
    /// The symbol to attach to, e.g. `__x64_sys_execve`.
    pub symbol: String,
    /// The symbol is an arch wrapper taking one `struct pt_regs *` (kernels ≥ 4.17), not the
    /// syscall's own arguments.
    pub wrapped: bool,
}

/// Symbol prefixes of this architecture, newest first, and whether they are pt_regs wrappers.
const PREFIXES: &[(&str, bool)] = if cfg!(target_arch = "x86_64") {
    &[("__x64_sys_", true), ("sys_", false)]
} else if cfg!(target_arch = "aarch64") {
    &[("__arm64_sys_", true), ("sys_", false)]
} else {
    &[("sys_", false)]
};

/// Finds `syscall`'s entry function (e.g. `execve` → `__x64_sys_execve`) in `/proc/kallsyms`.
pub fn resolve(syscall: &str) -> CaseResult<SyscallFn> {
    static KALLSYMS: LazyLock<Result<String, String>> = LazyLock::new(|| {
        fs::read_to_string("/proc/kallsyms").map_err(|e| format!("reading /proc/kallsyms: {e}"))
    });
    let kallsyms = KALLSYMS
        .as_ref()
        .map_err(|e| CaseError::Error(anyhow::anyhow!("{e}")))?;
    resolve_in(kallsyms, syscall)
}

fn resolve_in(kallsyms: &str, syscall: &str) -> CaseResult<SyscallFn> {
    // A line is `address type name[\t[module]]`: the name follows a space and ends the line or
    // precedes a tab. A substring search, not a walk over the lines: kallsyms has 100k+ lines.
    let has = |symbol: &str| {
        let name = format!(" {symbol}");
        kallsyms.match_indices(&name).any(|(at, _)| {
            matches!(
                kallsyms.as_bytes().get(at + name.len()),
                None | Some(b'\n' | b'\t')
            )
        })
    };
    PREFIXES
        .iter()
        .map(|(prefix, wrapped)| SyscallFn {
            symbol: format!("{prefix}{syscall}"),
            wrapped: *wrapped,
        })
        .find(|f| has(&f.symbol))
        .ok_or_else(|| {
            CaseError::unsupported(format!(
                "no entry function for syscall {syscall} in /proc/kallsyms (tried {})",
                PREFIXES
                    .iter()
                    .map(|(p, _)| format!("{p}{syscall}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

/// getppid(2), a real system call every time (no cached value): the event the syscall-tracing
/// cases count.
/// The parent's pid (0 when the parent is in another pid namespace).
pub fn getppid() -> i32 {
    rustix::process::getppid().map_or(0, |pid| pid.as_raw_nonzero().get())
}

/// getpid(2) straight to the kernel, as [`getppid`].
pub fn getpid() -> i32 {
    rustix::process::getpid().as_raw_nonzero().get()
}

/// getpgid(pid) straight to the kernel (no library caching or emulation): the process group, or
/// a negative errno.
pub fn getpgid(pid: i64) -> i64 {
    int_syscall(libc::SYS_getpgid, pid)
}

/// getsid(pid) straight to the kernel: the session id, or a negative errno.
pub fn getsid(pid: i64) -> i64 {
    int_syscall(libc::SYS_getsid, pid)
}

/// Syscall `nr`, which takes one integer and no pointer, as the kernel returns it.
fn int_syscall(nr: libc::c_long, arg: i64) -> i64 {
    // SAFETY: the callers' syscalls take one integer and touch no memory of the caller's.
    let ret = unsafe { libc::syscall(nr, arg) };
    if ret == -1 {
        -i64::from(nix::errno::Errno::last_raw())
    } else {
        ret
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn prefers_the_arch_wrapper_and_falls_back_to_the_old_name() {
        let new = "ffffffff81001000 T __x64_sys_execve\nffffffff81002000 T sys_ni_syscall\n";
        let old = "ffffffff81001000 T sys_execve\n";
        assert_eq!(
            resolve_in(new, "execve").unwrap().symbol,
            "__x64_sys_execve"
        );
        assert_eq!(
            resolve_in(old, "execve").unwrap(),
            SyscallFn {
                symbol: "sys_execve".into(),
                wrapped: false
            }
        );
        assert!(matches!(
            resolve_in(old, "nosuch"),
            Err(CaseError::Unsupported { .. })
        ));
    }
}
