//! `bpfconf vmtest ARGS…`: plain vmtest from the repository root, KVM hidden where it hangs.

use std::process::ExitCode;

use anyhow::Result;

use super::exit;

pub fn run(args: &[String]) -> Result<ExitCode> {
    Ok(exit(crate::vm::plain(args)?.success()))
}
