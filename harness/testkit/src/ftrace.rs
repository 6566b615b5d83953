//! Refusals of features that hook kernel functions through ftrace (BPF trampolines: fentry,
//! fexit): a kernel at their floor with their options on that refuses them is a regression,
//! unless the machine's kernel denies root ftrace's function interface by policy
//! (`platform.ftrace_denied`).

use std::fmt;
use std::fs::File;

use libbpf_rs::ErrorKind;
use libbpf_rs::skel::OpenSkel;

use crate::outcome::{CaseError, CaseResult};
use crate::{Case, LogLevel, floors};

/// The tracefs file listing the functions ftrace can hook; root reads it on any kernel built with
/// `CONFIG_DYNAMIC_FTRACE`.
const FUNCTIONS: &str = "available_filter_functions";

/// What the refusal `said` of feature `id` (which rides on ftrace) means. `EPERM` (`eperm`) to
/// root from a kernel that also refuses root its tracefs function list is the machine's policy
/// (the host's Firecracker kernel does both although its config has every option):
/// `platform.ftrace_denied`. Anything else is judged against the floor of `id`.
pub fn refused(id: &str, eperm: bool, said: impl fmt::Display) -> CaseError {
    if let Some(interpreter) = crate::jit::refused(&said.to_string()) {
        return interpreter;
    }
    if eperm && let Some(denied) = function_list_denied() {
        return floors::missing("platform.ftrace_denied", format!("{said}; and {denied}"));
    }
    floors::missing(id, said)
}

/// Loads a skeleton whose programs ride on trampolines (fentry, fmod_ret, LSM, ext): a refused load
/// is judged by [`refused`] for feature `id`, its message naming `what` was loaded.
pub fn load<'obj, S: OpenSkel<'obj>>(
    case: &mut Case,
    open: S,
    id: &str,
    what: impl fmt::Display,
) -> CaseResult<S::Output> {
    let (loaded, outcome) = case.try_load(open, LogLevel::Stats);
    loaded.map_err(|e| {
        refused(
            id,
            outcome.errno.as_deref() == Some("EPERM"),
            format!(
                "loading {what}: {} ({e:#})",
                outcome.message.clone().unwrap_or_default()
            ),
        )
    })
}

/// The verdict on a refused attach of such a program (`what`: what was attached to what):
/// [`refused`] for feature `id`.
pub fn attach_refused(id: &str, what: impl fmt::Display, e: libbpf_rs::Error) -> CaseError {
    refused(
        id,
        e.kind() == ErrorKind::PermissionDenied,
        format!("{what}: {e:#}"),
    )
}

/// How the kernel refused root the tracefs function list, when it answered `EPERM`.
fn function_list_denied() -> Option<String> {
    let path = crate::mounts::tracefs().ok()?.join(FUNCTIONS);
    match File::open(&path) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            Some(format!("opening {} as root: {e}", path.display()))
        }
        _ => None,
    }
}
