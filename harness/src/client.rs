//! Small python3 socket clients for cases whose socket work must happen in another process (one
//! inside the test's cgroup, or inside a network namespace): the script does its calls, catches
//! the errors it expects, and prints what it saw as one JSON object on its last stdout line.
//!
//! ```no_run
//! # use harness::{Cgroup, client};
//! # fn f(cg: &Cgroup) -> harness::CaseResult {
//! let report = client::run_json(cg.command(client::python("import json; print(json.dumps({'ok': 1}))", ["x"])))?;
//! assert_eq!(report["ok"], 1);
//! # Ok(()) }
//! ```

use std::ffi::OsString;
use std::time::Duration;

use crate::netns::NetNs;
use crate::outcome::{CaseError, CaseResult, OrError};

/// The interpreter: Debian's, which exists on the host and inside the VM guests alike (a user's
/// `python3` on PATH may be a shim that a cgroup's or namespace's restrictions break).
pub const PYTHON: &str = "/usr/bin/python3";

/// How long a client may run before the case is an `error`.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// `python3 -c <code> <args…>` (inside the script, `sys.argv[1:]` are `args`).
pub fn python<I, S>(code: &str, args: I) -> duct::Expression
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    duct::cmd(PYTHON, argv(code, args))
}

/// [`python`] run inside the network namespace `ns` (`ip netns exec`).
pub fn python_in<I, S>(ns: &NetNs, code: &str, args: I) -> duct::Expression
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    ns.exec(PYTHON, argv(code, args))
}

fn argv<I, S>(code: &str, args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let mut argv: Vec<OsString> = vec!["-c".into(), code.into()];
    argv.extend(args.into_iter().map(Into::into));
    argv
}

/// Runs `expr` to the end (stdin from /dev/null, output captured, at most [`TIMEOUT`]) and parses
/// the last line of its stdout as JSON. A client that cannot start, times out, exits non-zero or
/// prints no JSON is the harness's failure (`error`), with its stderr in the reason.
pub fn run_json(expr: duct::Expression) -> CaseResult<serde_json::Value> {
    let handle = expr
        .stdin_null()
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .start()
        .or_error("starting a python3 client")?;
    let output = match handle
        .wait_timeout(TIMEOUT)
        .or_error("waiting for a python3 client")?
    {
        Some(output) => output.clone(),
        None => {
            let _ = handle.kill();
            return Err(CaseError::Error(anyhow::anyhow!(
                "a python3 client did not finish within {} s",
                TIMEOUT.as_secs()
            )));
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(CaseError::Error(anyhow::anyhow!(
            "a python3 client failed ({}): {}",
            output.status,
            stderr.trim()
        )));
    }
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).map_err(|e| {
        CaseError::Error(anyhow::anyhow!(
            "a python3 client printed no JSON ({e}): stdout {stdout:?}, stderr {:?}",
            stderr.trim()
        ))
    })
}
