//! `bpfconf suite`: the suite's test binaries on the running kernel, a record for every test.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

use crate::cli;
use crate::kernels::KernelList;
use crate::manifest::Manifest;
use crate::suite;

pub fn run(args: cli::Suite) -> Result<ExitCode> {
    let kernel = (args.kernel).unwrap_or_else(|| record::kernel_id(&record::kernel_release()));
    let opts = suite::Options {
        spec: KernelList::load()?.spec(&kernel).cloned(),
        kernel,
        results: args.results.unwrap_or_else(crate::paths::results_dir),
        threads: args.threads,
        timeout: Duration::from_secs(args.binary_timeout),
        case_timeout: Duration::from_secs(args.case_timeout),
        env: args.env,
        filter: args.filter,
        binary: args.binary,
        run_known_bugs: args.run_known_bugs,
        selftests: args.selftests,
    };
    let manifest = Manifest::load(&args.manifest.unwrap_or_else(Manifest::path))?;
    let exit = suite::run(&manifest, &opts)?;
    Ok(ExitCode::from(exit as u8))
}
