//! `bpfconf bench-boot`: what one VM costs before the suite runs — a bare boot of the kernel to the
//! initramfs's `/init` (modules loaded, then power-off since no 9p root is offered) against a vmtest
//! run of `true` (the same boot plus vmtest's init, 9p root and guest agent).

use std::fs;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use crate::kernels::{KernelSpec, fetch::fetch};
use crate::table::Table;
use crate::{vm, watched};

/// One kernel's boot times.
#[derive(Debug)]
pub struct BootTimes {
    /// Kernel id.
    pub kernel: String,
    /// QEMU start to power-off from the initramfs's `/init`.
    pub bare: Duration,
    /// vmtest running `true`, start to finish.
    pub vmtest: Duration,
}

/// Boots each kernel twice (bare, then under vmtest) and returns the times.
pub fn boot_times(kernels: &[KernelSpec]) -> Result<Vec<BootTimes>> {
    let dir = tempfile::tempdir().context("creating a scratch dir")?;
    let mut times = Vec::new();
    for k in kernels {
        let ready = fetch(k, &|_| {})?;
        let started = Instant::now();
        let accel = if vm::kvm_usable() { "kvm" } else { "tcg" };
        let out = duct::cmd!(
            "qemu-system-x86_64",
            "-nodefaults",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-cpu",
            "qemu64",
            "-accel",
            accel,
            "-smp",
            vm::cpus().to_string(),
            "-m",
            "2G",
            "-no-reboot",
            "-kernel",
            &ready.vmlinuz,
            "-initrd",
            &ready.initramfs,
            "-append",
            format!("console=ttyS0 panic=-1 {}", vm::KERNEL_ARGS)
        )
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked()
        .run()
        .context("running qemu-system-x86_64 (run ci/setup)")?;
        let bare = started.elapsed();
        let console = String::from_utf8_lossy(&out.stdout);
        ensure!(
            console.contains("cannot mount the 9p root"),
            "kernel {}: the bare boot never reached /init:\n{console}",
            k.id
        );

        let config = dir.path().join(format!("{}.toml", k.id));
        fs::write(
            &config,
            vm::vmtest_toml(
                std::slice::from_ref(k),
                |_| "true".into(),
                false,
                vm::cpus(),
            ),
        )?;
        let mut tail = Vec::new();
        let run = watched::run(
            vm::command(&config, &k.id)?,
            Duration::from_secs(600),
            |line| {
                tail.push(line.to_owned());
                watched::Next::Go
            },
        )?;
        ensure!(
            run.status.success(),
            "kernel {}: vmtest `true` failed:\n{}",
            k.id,
            tail[tail.len().saturating_sub(40)..].join("\n")
        );
        times.push(BootTimes {
            kernel: k.id.clone(),
            bare,
            vmtest: run.elapsed,
        });
    }
    Ok(times)
}

/// The times as a Markdown table.
pub fn markdown(times: &[BootTimes]) -> String {
    let headers = [
        "kernel",
        "bare boot to /init s",
        "vmtest `true` s",
        "vmtest overhead s",
    ];
    let mut table = Table::new(headers);
    for t in times {
        let (bare, vmtest) = (t.bare.as_secs_f64(), t.vmtest.as_secs_f64());
        table.row([
            t.kernel.clone(),
            format!("{bare:.1}"),
            format!("{vmtest:.1}"),
            format!("{:.1}", vmtest - bare),
        ]);
    }
    table.to_string()
}
