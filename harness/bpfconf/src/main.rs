//! `bpfconf`: the suite's runner and command line. This file parses the command line and hands
//! each command to its module in `commands/`; `cli` defines the commands.
//!
//! Layers: a module uses the layers below its own and, within its own, others without a circle
//! (`layering`'s test fails on any import circle):
//! 1. `paths`, `text`, `table`, `watched`, `kmsg`: where things are, text and process helpers;
//! 2. `kernels`, `vm`, `manifest`: the kernels, booting them, the test binaries;
//! 3. `run`: the run model (records → run → cells);
//! 4. readers of the model (`report`, `compare`, `baseline`, `repeat`, `objects`, `known_bugs`,
//!    `mutants`) and what makes runs (`suite`, `columns`, `corpora`, `bench`);
//! 5. `commands` and `cli`.

mod baseline;
mod bench;
mod cli;
mod columns;
mod commands;
mod compare;
mod corpora;
mod kernels;
mod kmsg;
mod known_bugs;
#[cfg(test)]
mod layering;
mod manifest;
mod mutants;
mod objects;
mod paths;
mod repeat;
mod report;
mod run;
mod suite;
mod table;
mod text;
mod uapi_coverage;
mod vm;
mod watched;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    // VMs run in process groups of their own: take them down with us.
    let _ = ctrlc::set_handler(|| {
        watched::kill_all();
        std::process::exit(130);
    });
    match run(Cli::parse().command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bpfconf: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> Result<ExitCode> {
    use commands::*;
    match command {
        Command::Report(args) => report::run(args),
        Command::Compare { old, new, compare } => compare::run(old, new, &compare),
        Command::Baseline { command } => baseline::run(command),
        Command::Probe { json } => probe::run(json),
        Command::Kernels { command } => kernels::run(command),
        Command::BenchBoot { ids } => bench_boot::run(&ids),
        Command::Vmtest { args } => vmtest::run(&args),
        Command::Objects(args) => objects::run(args),
        Command::ObjectsLoad {
            kernel,
            results,
            files,
        } => objects::load_here(&files, &kernel, &results),
        Command::Selftests { command } => selftests::run(command),
        Command::VmExec { id, command } => vm_exec::run(&id, &command),
        Command::Tests => tests::run(),
        Command::Suite(args) => suite::run(args),
        Command::Matrix(args) => matrix::run(args),
        Command::Mutants(args) => mutants::run(args),
    }
}
