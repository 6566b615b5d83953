//! `bpfconf kernels list|fetch|build|update|sync`: the kernels of kernels.toml.

use std::fs;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::cli::KernelsCommand;
use crate::kernels::{self, KernelList, Kind, apt::Apt, fetch::fetch};
use crate::vm;

pub fn run(command: KernelsCommand) -> Result<ExitCode> {
    let list = KernelList::load()?;
    match command {
        KernelsCommand::List { json: false } => print!("{}", kernels::list(&list)),
        KernelsCommand::List { json: true } => println!("{}", kernels::ci_jobs(&list)?),
        KernelsCommand::Fetch { ids } => {
            for k in list.select(&ids)? {
                let ready = fetch(&k, &|step| eprintln!("{}: {step}", k.id))?;
                println!(
                    "{}: ready ({}), {}",
                    k.id,
                    ready.release,
                    ready.vmlinuz.display()
                );
            }
        }
        KernelsCommand::Build { ids } => {
            let selected: Vec<_> = if ids.is_empty() {
                (list.vm_kernels())
                    .filter(|k| k.kind == Kind::Source)
                    .cloned()
                    .collect()
            } else {
                list.select(&ids)?
            };
            for k in selected {
                if k.kind != Kind::Source {
                    bail!(
                        "kernel {} is not kind = \"source\": use `kernels fetch`",
                        k.id
                    );
                }
                let start = Instant::now();
                let built = kernels::source::build(&k, &|step| eprintln!("{}: {step}", k.id))?;
                println!(
                    "{}: built {} ({}, {:.0} s)",
                    k.id,
                    built.release,
                    built.bzimage.display(),
                    start.elapsed().as_secs_f64()
                );
            }
        }
        KernelsCommand::Update => {
            let apt = Apt::new(&kernels::cache_dir())?;
            apt.update()?;
            let repins = list.repins(&apt)?;
            if repins.is_empty() {
                println!("every pin is the newest the mirror serves");
            }
            for r in &repins {
                println!("{}", r.line);
            }
            let path = kernels::toml_path();
            let text =
                fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let updated = kernels::apply_repins(&text, &repins)?;
            fs::write(&path, updated).with_context(|| format!("writing {}", path.display()))?;
            sync()?;
        }
        KernelsCommand::Sync => sync()?,
    }
    Ok(ExitCode::SUCCESS)
}

fn sync() -> Result<()> {
    let path = vm::vmtest_toml_path();
    if vm::sync()? {
        println!("{} rewritten: commit it", path.display());
    } else {
        println!("{} is up to date", path.display());
    }
    Ok(())
}
