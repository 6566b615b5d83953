//! `bpfconf selftests build|run|summary`: the kernel's own BPF selftests (`crate::corpora`).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

use crate::cli::SelftestsCommand;
use crate::corpora;
use crate::kernels::KernelList;

pub fn run(command: SelftestsCommand) -> Result<ExitCode> {
    match command {
        SelftestsCommand::Build { trees } => {
            corpora::build_all(&KernelList::load()?, &trees)?;
            println!("listed in {}", corpora::list_path().display());
        }
        SelftestsCommand::Run {
            kernel,
            results,
            corpus,
            load_budget,
        } => {
            let kernel = kernel.unwrap_or_else(|| record::kernel_id(&record::kernel_release()));
            let results = results.unwrap_or_else(crate::paths::results_dir);
            let budget = Duration::from_secs(load_budget);
            corpora::run(&kernel, &results, corpus.as_deref(), budget)?;
        }
        SelftestsCommand::Summary { runs } => print!("{}", corpora::summary(&runs)?),
    }
    Ok(ExitCode::SUCCESS)
}
