//! `bpfconf`: the suite's command line — reports over result records (and, as the matrix grows,
//! kernels and VMs).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use harness::record;
use harness::report::Matrix;

#[derive(Parser)]
#[command(
    name = "bpfconf",
    about = "BPF conformance suite: results, reports, kernels"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the compatibility matrix (Markdown) of a results directory; exit 1 on any fail or error.
    Report {
        /// The directory of `<kernel-id>.jsonl` files (default: $BPFCONF_RESULTS or target/bpfconf-results).
        #[arg(long)]
        results: Option<PathBuf>,
    },
    /// Probe the running kernel: program types, map types and helpers per program type (needs root).
    Probe {
        /// Print JSON (with every helper's name) instead of the table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> Result<ExitCode> {
    match Cli::parse().command {
        Command::Probe { json } => {
            let features = harness::features::Features::probe();
            if json {
                println!("{}", serde_json::to_string_pretty(&features)?);
            } else {
                print!("{}", features.table());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Report { results } => {
            let dir = results.unwrap_or_else(record::results_dir);
            let records = record::read_dir(&dir)
                .with_context(|| format!("reading results in {}", dir.display()))?;
            anyhow::ensure!(
                !records.is_empty(),
                "no result records in {}: run the suite first",
                dir.display()
            );
            let matrix = Matrix::from_records(&records);
            print!("{}", matrix.markdown());
            Ok(if matrix.has_failures() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}
