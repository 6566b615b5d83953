//! Resolving a syscall's kernel function for kprobes, as BCC's `get_syscall_fnname` does.

use std::fs;

use crate::outcome::{CaseError, CaseResult, OrError};

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
    let kallsyms = fs::read_to_string("/proc/kallsyms").or_error("reading /proc/kallsyms")?;
    resolve_in(&kallsyms, syscall)
}

fn resolve_in(kallsyms: &str, syscall: &str) -> CaseResult<SyscallFn> {
    let has = |symbol: &str| {
        kallsyms
            .lines()
            .any(|line| line.split_whitespace().nth(2) == Some(symbol))
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
