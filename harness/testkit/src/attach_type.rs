//! Loading and attaching with an attach type the running kernel may not know. A kernel before the
//! attach type answers the load (an unknown expected attach type) or the attach (an unknown attach
//! type, a link kind it lacks) with `EINVAL` or `EOPNOTSUPP`, or its verifier refuses a context
//! field or a kfunc the attach type brought (`invalid bpf_context access`, `calling kernel
//! function … is not allowed`): that refusal is judged by the attach
//! type's floor (`attach_type.<key>` in kernels/floors.toml), so older kernels are `unsupported`
//! and a kernel past the floor that refuses is a `fail`. `EPERM` goes through
//! [`crate::ftrace::refused`] (a machine that denies ftrace refuses trampolines so). Any other
//! refusal fails the case.

use std::fmt;

use libbpf_rs::skel::OpenSkel;
use nix::errno::Errno;

use crate::case::Case;
use crate::floors;
use crate::load::LogLevel;
use crate::outcome::{CaseError, CaseResult};

/// The verifier's complaints about what its kernel does not offer the program's attach type: a
/// context field, a kfunc.
fn not_offered(message: &str) -> bool {
    message.contains("invalid bpf_context access")
        || (message.contains("calling kernel function") && message.contains("is not allowed"))
}

/// Whether `errno` is how a kernel says it does not know an attach type.
fn unknown(errno: Option<Errno>) -> bool {
    matches!(errno, Some(Errno::EINVAL | Errno::EOPNOTSUPP))
}

/// What a refusal with `errno` means for feature `id`: `EPERM` to root is the machine's ftrace
/// policy where it denies ftrace (trampolines: LSM, fentry-like types), else judged like an unknown
/// attach type.
fn refused(id: &str, errno: Option<Errno>, said: impl fmt::Display) -> CaseError {
    if errno == Some(Errno::EPERM) {
        crate::ftrace::refused(id, true, said)
    } else if unknown(errno) {
        floors::missing(id, said)
    } else {
        CaseError::Fail(anyhow::anyhow!("{said}"))
    }
}

/// Loads `open` as [`Case::load`] does, except that a refusal with `EINVAL`/`EOPNOTSUPP` or of a
/// context field or kfunc is judged by the floor of `id` (the program's expected attach type);
/// the fault switch naming `id` makes it `unsupported` before loading.
pub fn load<'obj, S: OpenSkel<'obj>>(case: &mut Case, id: &str, open: S) -> CaseResult<S::Output> {
    if !floors::has(id, true) {
        return Err(floors::missing(id, "not loaded"));
    }
    let (loaded, outcome) = case.try_load(open, LogLevel::Stats);
    loaded.map_err(|e| {
        let message = outcome.message.clone().unwrap_or_default();
        if let Some(jit) = crate::jit::refused(&message) {
            return jit;
        }
        let errno = libbpf_errno(&e);
        // The key line can be the source line the verifier annotated: read the whole log.
        let log = outcome
            .failed_program
            .as_ref()
            .and_then(|p| outcome.programs.get(p))
            .map_or("", |p| p.log.as_str());
        if errno == Some(Errno::EACCES) && (not_offered(&message) || not_offered(log)) {
            return floors::missing(
                id,
                format!("the verifier refused {}: {message}", outcome.object),
            );
        }
        refused(
            id,
            errno,
            format!("the kernel refused {}: {message} ({e:#})", outcome.object),
        )
    })
}

/// Runs `attach` (a libbpf-rs attach call) for feature `id`: its refusal with `EINVAL`/
/// `EOPNOTSUPP` is judged by the floor, any other fails the case (`what` names the attachment);
/// the fault switch naming `id` makes it `unsupported` without attaching.
pub fn libbpf<T>(
    id: &str,
    what: &str,
    attach: impl FnOnce() -> libbpf_rs::Result<T>,
) -> CaseResult<T> {
    if !floors::has(id, true) {
        return Err(floors::missing(id, format!("{what}: not attached")));
    }
    attach().map_err(|e| refused(id, libbpf_errno(&e), format!("{what}: {e:#}")))
}

/// [`libbpf`] for a raw call that failed with `errno`.
pub fn errno<T>(id: &str, what: &str, attach: impl FnOnce() -> Result<T, Errno>) -> CaseResult<T> {
    if !floors::has(id, true) {
        return Err(floors::missing(id, format!("{what}: not attached")));
    }
    attach().map_err(|e| refused(id, Some(e), format!("{what}: {e}")))
}

fn libbpf_errno(error: &libbpf_rs::Error) -> Option<Errno> {
    crate::errno::of_libbpf(error).map(|code| Errno::from_raw(code.abs()))
}
