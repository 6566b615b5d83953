//! `bpfconf compare OLD NEW`: what changed between two runs, in the formats asked for.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use super::{exit, load};
use crate::cli::CompareArgs;
use crate::compare::{self, Options};
use crate::run::Run;

pub fn run(old: PathBuf, new: PathBuf, args: &CompareArgs) -> Result<ExitCode> {
    emit(args, &load(&[old])?, &load(&[new])?, Vec::new())
}

/// Compares `old` with `new` and writes every format asked for (the Markdown to stdout unless a
/// file is named); `notes` (what the caller left out) go first among the comparison's own.
/// Success unless something regressed.
pub fn emit(args: &CompareArgs, old: &Run, new: &Run, notes: Vec<String>) -> Result<ExitCode> {
    let options = Options {
        threshold_pct: args.threshold,
        ..Default::default()
    };
    let mut comparison = compare::compare(old, new, &options);
    comparison.notes.splice(0..0, notes);
    (args.outputs).write(true, |format| compare::render(&comparison, format))?;
    Ok(exit(comparison.regressions == 0))
}
