//! `bpfconf baseline accept|check`: rewrite tests/baseline.json from a run, or compare a run with
//! it.

use std::process::ExitCode;

use anyhow::Result;

use super::load;
use crate::baseline;
use crate::cli::BaselineCommand;

pub fn run(command: BaselineCommand) -> Result<ExitCode> {
    match command {
        BaselineCommand::Accept { run, file } => {
            let file = file.unwrap_or_else(baseline::path);
            let run = load(&[run])?;
            baseline::write(&run, &file)?;
            let snapshots = crate::paths::workspace_root().join("tests/snapshots");
            baseline::bind_snapshots(&run, &snapshots)?;
            println!(
                "{} rewritten, and each column's build written to {}/<kernel>/build.json: \
                 commit them (with the snapshots accepted by `cargo insta accept`)",
                file.display(),
                snapshots.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        BaselineCommand::Check {
            runs,
            file,
            compare,
        } => {
            let file = file.unwrap_or_else(baseline::path);
            let run = load(&runs)?;
            let mut accepted = baseline::read(&file)?;
            let notes = [
                baseline::skip_other_host(&mut accepted, &run),
                baseline::skip_unrun_selftests(&mut accepted, &run),
            ];
            super::compare::emit(
                &compare,
                &accepted,
                &run,
                notes.into_iter().flatten().collect(),
            )
        }
    }
}
