//! `bpfconf matrix`: the suite on the host and on each selected kernel under vmtest, then the
//! report; with `--repeat N` the same N times and the cells that varied; with `--known-bugs`
//! each known bug alone instead.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

use super::{exit, load};
use crate::columns::{self, Options};
use crate::kernels::KernelList;
use crate::manifest::Manifest;
use crate::report::Report;
use crate::{cli, corpora, known_bugs, paths, repeat, vm};

pub fn run(args: cli::Matrix) -> Result<ExitCode> {
    let selected = if args.kernels == ["host"] {
        Vec::new()
    } else {
        KernelList::load()?.select(&args.kernels)?
    };
    // Named after the binaries are built: the stamp says when the columns started.
    let run_dir = || match &args.run_dir {
        Some(dir) => Ok(dir.clone()),
        None => paths::new_run_dir(),
    };
    if args.known_bugs {
        vm::check_tools()?;
        Manifest::build()?;
        let run_dir = run_dir()?;
        let timeout = Duration::from_secs(args.binary_timeout.min(args.timeout));
        let checks = known_bugs::check(&selected, &run_dir, timeout, args.repeat.unwrap_or(3))?;
        print!("{}", known_bugs::markdown(&checks));
        return Ok(ExitCode::SUCCESS);
    }
    if !selected.is_empty() {
        vm::check_tools()?;
    }
    eprintln!("building the test binaries");
    let manifest = Manifest::build()?;
    if args.selftests {
        eprintln!("building the kernel's own selftests");
        corpora::build_all(&KernelList::load()?, &[])?;
    }
    let jobs =
        (args.jobs).unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut opts = Options {
        kernels: selected,
        host: !args.no_host,
        jobs,
        timeout: Duration::from_secs(args.timeout),
        binary_timeout: Duration::from_secs(args.binary_timeout),
        case_timeout: Duration::from_secs(args.case_timeout),
        run_dir: run_dir()?,
        selftests: args.selftests,
        manifest: Manifest::path(),
        env: Vec::new(),
    };
    let repeats = args.repeat.unwrap_or(1);
    if repeats > 1 {
        let base = opts.run_dir.clone();
        let mut runs = Vec::new();
        for i in 1..=repeats {
            opts.run_dir = base.join(repeat::run_dir(i));
            eprintln!("run {i} of {repeats}: {}", opts.run_dir.display());
            columns::run(&opts, &manifest)?;
            runs.push(load(std::slice::from_ref(&opts.run_dir))?);
        }
        let failures = runs.iter().any(|r| r.has_failures());
        let varied = repeat::varied(&runs);
        print!("{}", repeat::markdown(&runs, &varied));
        println!("results: {}", base.display());
        return Ok(exit(varied.is_empty() && !failures));
    }
    let timings = columns::run(&opts, &manifest)?;
    let mut run = load(std::slice::from_ref(&opts.run_dir))?;
    let selftests = run.take_selftests();
    let report = Report::new(&run).with_selftests(&selftests);
    print!("{}", report.markdown());
    println!("\n{}", columns::timings_markdown(&timings));
    println!("results: {}", opts.run_dir.display());
    println!("{}", report.closing_line());
    Ok(exit(!run.has_failures() && !selftests.has_failures()))
}
