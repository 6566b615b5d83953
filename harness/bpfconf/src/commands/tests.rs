//! `bpfconf tests`: build the test binaries and list them for the columns.

use std::process::ExitCode;

use anyhow::Result;

use crate::manifest::Manifest;

pub fn run() -> Result<ExitCode> {
    let manifest = Manifest::build()?;
    println!(
        "{} test binaries, {} tests, listed in {}",
        manifest.binaries.len(),
        manifest.tests().count(),
        Manifest::path().display()
    );
    Ok(ExitCode::SUCCESS)
}
