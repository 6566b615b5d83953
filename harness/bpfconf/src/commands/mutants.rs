//! `bpfconf mutants`: the suite built with its planted bugs (`BPFCONF_MUTANTS=1`, into
//! `target/mutants`) and as usual, both run on the host as a column of the matrix is run (a record
//! for every case, each run in a results directory of its own), then each bug's verdict.

use std::fs;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use record::Record;

use super::exit;
use crate::columns::{self, Options};
use crate::manifest::Manifest;
use crate::{cli, mutants, paths};

pub fn run(args: cli::Mutants) -> Result<ExitCode> {
    let root = paths::workspace_root();
    let bugs = mutants::planted(&root.join("programs/src/bpf"))?;
    if bugs.is_empty() {
        bail!("no `#ifdef BPFCONF_MUTANT` in programs/src/bpf/*.bpf.c");
    }
    let dir = paths::target_dir().join("mutants");
    eprintln!("building the test binaries");
    let normal = Manifest::build()?;
    eprintln!(
        "building the test binaries with the planted bugs into {}",
        dir.display()
    );
    let mutant = Manifest::build_in(&dir, &[("BPFCONF_MUTANTS", "1")])?;
    let mutant_manifest = dir.join("bpfconf-tests.json");
    mutant.save_to(&mutant_manifest)?;
    let kernel = record::kernel_id(&record::kernel_release());
    let mut records = Vec::new();
    for (name, manifest, path) in [
        ("normal", &normal, Manifest::path()),
        ("mutant", &mutant, mutant_manifest),
    ] {
        let run_dir = dir.join(format!("{name}-results"));
        if run_dir.exists() {
            fs::remove_dir_all(&run_dir)?;
        }
        eprintln!("running the {name} build: {}", run_dir.display());
        let opts = Options {
            kernels: Vec::new(),
            host: true,
            jobs: 1,
            timeout: Duration::from_secs(args.binary_timeout),
            binary_timeout: Duration::from_secs(args.binary_timeout),
            case_timeout: Duration::from_secs(args.case_timeout),
            run_dir: run_dir.clone(),
            selftests: false,
            manifest: path,
            // A planted bug changes the verifier's statistics: the behaviour checks decide, and
            // no snapshot is written.
            env: vec![
                ("INSTA_FORCE_PASS".into(), "1".into()),
                ("INSTA_UPDATE".into(), "no".into()),
            ],
        };
        columns::run(&opts, manifest)?;
        let (column, unreadable) = record::read_dir(&run_dir)?;
        if let Some(bad) = unreadable.first() {
            bail!("{}: {}", bad.place, bad.error);
        }
        let column: Vec<Record> = column.into_iter().filter(|r| r.kernel == kernel).collect();
        records.push(column);
    }
    let modules = mutants::modules(&records[0]);
    let judged: Vec<_> = bugs
        .into_iter()
        .map(|mut bug| {
            bug.module = mutants::module_for(&bug.module, &modules);
            let j = mutants::judge(&bug.module, &records[1], &records[0]);
            (bug, j)
        })
        .collect();
    println!("Planted bugs on {kernel} ({}):\n", record::kernel_release());
    print!("{}", mutants::markdown(&judged));
    let ok = mutants::none_missed(&judged);
    let caught = judged
        .iter()
        .filter(|(_, j)| matches!(j.verdict, mutants::Verdict::Caught(_)))
        .count();
    println!(
        "\n{caught} of {} planted bugs caught{}",
        judged.len(),
        if ok { "" } else { ", some MISSED" }
    );
    Ok(exit(ok))
}
