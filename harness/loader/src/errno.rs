//! The errno behind a failed call, in one place: libbpf-rs keeps it only in its message
//! (`… (os error 22)`), std in [`std::io::Error::raw_os_error`].

use std::io;
use std::sync::LazyLock;

use nix::errno::Errno;
use regex::Regex;

/// `ENOTSUPP` (kernel-internal, 524; not `EOPNOTSUPP`): e.g. a program type without a test-run
/// operation.
pub const ENOTSUPP: i32 = 524;

/// The errno in a libbpf-rs error's message.
pub fn of_libbpf(error: &libbpf_rs::Error) -> Option<i32> {
    static OS_ERROR: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"os error (\d+)").expect("valid regex"));
    OS_ERROR.captures(&format!("{error:#}"))?[1].parse().ok()
}

/// The errno of a failed call as plain data (`EIO` for an error that carries none): what a forked
/// child hands back (`testkit::child`).
pub fn io<T>(result: io::Result<T>) -> Result<T, Errno> {
    result.map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
}

/// `22` (or `-22`) → `EINVAL`.
pub fn name(code: i32) -> String {
    format!("{:?}", Errno::from_raw(code.abs()))
}

/// A failed call's errno by name, or its message when it carries none.
pub fn describe(error: &io::Error) -> String {
    error.raw_os_error().map_or_else(|| error.to_string(), name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_extracts() {
        assert_eq!(name(-22), "EINVAL");
        let e = libbpf_rs::Error::from_raw_os_error(ENOTSUPP);
        assert_eq!(of_libbpf(&e), Some(ENOTSUPP));
        assert_eq!(io::<()>(Err(io::Error::other("no errno"))), Err(Errno::EIO));
        assert_eq!(
            describe(&io::Error::from_raw_os_error(libc::EPERM)),
            "EPERM"
        );
    }
}
