//! `bpfconf report`: the report of a run in the formats asked for, or one of its narrower views.

use std::process::ExitCode;

use anyhow::Result;

use super::{exit, load};
use crate::cli;
use crate::report::{Report, helpers, isa, views};

pub fn run(args: cli::Report) -> Result<ExitCode> {
    let mut runs = args.runs;
    if runs.is_empty() || args.results.is_some() {
        runs.push(args.results.unwrap_or_else(crate::paths::results_dir));
    }
    if args.slowest.is_some() || args.verifier || args.helpers || args.isa {
        let run = crate::run::load(&runs)?;
        match args.slowest {
            Some(n) => print!("{}", views::slowest(&run, n)),
            None if args.helpers => print!("{}", helpers::markdown(&run)),
            None if args.isa => print!("{}", isa::markdown(&run)),
            None => print!("{}", views::verifier(&run)),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut run = load(&runs)?;
    let selftests = run.take_selftests();
    let report = Report::new(&run).with_selftests(&selftests);
    let outputs = &args.outputs;
    outputs.write(outputs.none(), |format| report.render(format))?;
    let problems = report.problems();
    if !problems.is_empty() {
        eprintln!(
            "bpfconf: incomplete report: {} record(s) could not be read",
            problems.len()
        );
    }
    eprintln!("{}", report.closing_line());
    Ok(exit(!run.has_failures() && !selftests.has_failures()))
}
