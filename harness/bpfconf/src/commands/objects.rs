//! `bpfconf objects FILE…` (every program of your objects loaded alone on each kernel, and the
//! report of it) and `bpfconf objects-load` (what each of its columns runs).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, ensure};

use super::{exit, load};
use crate::cli;
use crate::kernels::KernelList;
use crate::objects;
use crate::report::Report;
use crate::vm;

pub fn run(args: cli::Objects) -> Result<ExitCode> {
    let mut good = Vec::new();
    let mut bad = 0;
    for file in args.files {
        match objects::check(&file).and_then(|_| Ok(fs::canonicalize(&file)?)) {
            Ok(path) => good.push(path),
            Err(e) => {
                eprintln!("bpfconf: {e:#}");
                bad += 1;
            }
        }
    }
    ensure!(!good.is_empty(), "no object to load");
    let opts = objects::Options {
        files: good,
        kernels: KernelList::load()?.select(&args.kernels)?,
        host: !args.no_host,
        run_dir: match args.run_dir {
            Some(dir) => dir,
            None => crate::paths::new_run_dir()?,
        },
    };
    if !opts.kernels.is_empty() {
        vm::check_tools()?;
    }
    let columns = objects::run(&opts)?;
    let run = load(std::slice::from_ref(&opts.run_dir))?;
    print!("{}", Report::new(&run).markdown());
    println!(
        "\nProcessed instructions:\n\n{}",
        objects::stats_markdown(&run)
    );
    print!("{}", objects::columns_markdown(&columns));
    println!("results: {}", opts.run_dir.display());
    let mut ok = bad == 0 && columns.iter().all(|(_, _, p)| p.is_none());
    if let Some(min) = args.min_kernel {
        let refused = objects::refused_since(&run, &min);
        for r in &refused {
            println!("refused at or past {min}: {r}");
        }
        ok &= refused.is_empty();
    }
    Ok(exit(ok))
}

/// `bpfconf objects-load`.
pub fn load_here(files: &[PathBuf], kernel: &str, results: &Path) -> Result<ExitCode> {
    objects::load_all(files, kernel, results)?;
    Ok(ExitCode::SUCCESS)
}
