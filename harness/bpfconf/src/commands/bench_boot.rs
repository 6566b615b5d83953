//! `bpfconf bench-boot`: the boot times of the selected kernels.

use std::process::ExitCode;

use anyhow::Result;

use crate::bench;
use crate::kernels::KernelList;

pub fn run(ids: &[String]) -> Result<ExitCode> {
    let times = bench::boot_times(&KernelList::load()?.select(ids)?)?;
    print!("{}", bench::markdown(&times));
    Ok(ExitCode::SUCCESS)
}
