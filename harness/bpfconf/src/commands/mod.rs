//! One module per command: each reads its arguments (`crate::cli`), does the work through the
//! modules below, prints, and says how the process exits.

pub mod baseline;
pub mod bench_boot;
pub mod compare;
pub mod kernels;
pub mod matrix;
pub mod mutants;
pub mod objects;
pub mod probe;
pub mod report;
pub mod selftests;
pub mod suite;
pub mod tests;
pub mod vm_exec;
pub mod vmtest;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::Outputs;
use crate::report::Format;
use crate::run::{self, Run};

impl Outputs {
    /// Writes each format asked for, made by `render`; the Markdown to stdout when no file is
    /// named for it and `markdown_by_default`.
    pub fn write(
        &self,
        markdown_by_default: bool,
        render: impl Fn(Format) -> Result<String>,
    ) -> Result<()> {
        let stdout = PathBuf::from("-");
        let markdown = (self.markdown.as_ref()).or(markdown_by_default.then_some(&stdout));
        for (to, format) in [
            (markdown, Format::Markdown),
            (self.html.as_ref(), Format::Html),
            (self.json.as_ref(), Format::Json),
            (self.junit.as_ref(), Format::Junit),
        ] {
            if let Some(to) = to {
                output(to, &render(format)?)?;
            }
        }
        Ok(())
    }

    /// Whether no format is asked for.
    pub fn none(&self) -> bool {
        [&self.markdown, &self.html, &self.json, &self.junit]
            .iter()
            .all(|o| o.is_none())
    }
}

/// The run in `dirs` (one run, or its shards), each record that cannot be read named on stderr.
pub fn load(dirs: &[PathBuf]) -> Result<Run> {
    let run = run::load(dirs)?;
    for bad in &run.unreadable {
        eprintln!("bpfconf: {}: {}", bad.place, bad.error);
    }
    Ok(run)
}

/// Writes `text` to `to` (`-`: stdout), saying where and how big on stderr.
fn output(to: &Path, text: &str) -> Result<()> {
    if to == Path::new("-") {
        print!("{text}");
        return Ok(());
    }
    fs::write(to, text).with_context(|| format!("writing {}", to.display()))?;
    eprintln!("bpfconf: wrote {} ({} bytes)", to.display(), text.len());
    Ok(())
}

/// Exit 0 when `ok`, else 1.
pub fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
