//! `bpfconf vm-exec ID -- BINARY ARGS…`: one test binary, with libtest's arguments, inside a VM of
//! matrix kernel ID, its output streamed as if it ran here. cargo calls it through the runner
//! `ci/cargo-vm-runner` when `BPFCONF_VM` is set: `BPFCONF_VM=6.1 cargo test --test suite -- xdp::`.

use std::fs;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::kernels::{KernelList, fetch::fetch};
use crate::{suite, vm, watched};

/// `bpfconf vm-exec ID BINARY ARGS…`: exits as the binary did.
pub fn run(id: &str, command: &[String]) -> Result<ExitCode> {
    let code = in_vm(id, &command[0], &command[1..])?;
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// Runs `binary args` in a VM of kernel `id`; returns its exit status (vmtest's).
fn in_vm(id: &str, binary: &str, args: &[String]) -> Result<i32> {
    let spec = KernelList::load()?.select(&[id.to_owned()])?.remove(0);
    let prepared = fetch(&spec, &|step| eprintln!("{id}: {step}"))?;
    let opts = suite::Options {
        kernel: id.to_owned(),
        spec: Some(spec.clone()),
        results: crate::paths::results_dir(),
        threads: 2,
        timeout: Duration::ZERO,
        case_timeout: Duration::ZERO,
        env: Vec::new(),
        filter: None,
        binary: None,
        run_known_bugs: false,
        selftests: false,
    };
    let binary = fs::canonicalize(binary).with_context(|| format!("finding {binary}"))?;
    let env: Vec<String> = suite::environment(&opts, &prepared.release)?
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    // As `bpfconf suite` does inside a VM: users without capabilities may load programs.
    let allow = format!(
        "[ \"$(cat {0})\" = 2 ] && echo 0 > {0}; exec \"$@\"",
        suite::UNPRIVILEGED_BPF
    );
    let words: Vec<String> = ["sh", "-c", &allow, "sh", "env"]
        .into_iter()
        .map(str::to_owned)
        .chain(env)
        .chain([binary.display().to_string()])
        .chain(args.iter().cloned())
        .collect();
    let command = shlex::try_join(words.iter().map(String::as_str))
        .context("quoting the command for the VM")?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("vmtest.toml");
    fs::write(
        &config,
        vm::vmtest_toml(
            std::slice::from_ref(&spec),
            |_| command.clone(),
            false,
            vm::cpus(),
        ),
    )?;
    let ended = watched::run(
        vm::command(&config, id)?,
        Duration::from_secs(3600),
        |line| {
            println!("{line}");
            watched::Next::Go
        },
    )?;
    Ok(ended.status.code().unwrap_or(1))
}
