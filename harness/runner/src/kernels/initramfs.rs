//! The initramfs that lets vmtest boot a distribution kernel: vmtest needs 9p and virtio built in,
//! Debian builds them as modules. Its `/init` (busybox) loads those and the modules the suite needs,
//! mounts vmtest's 9p root (`/dev/root`, with the `rootflags=` vmtest puts on the command line) and
//! hands over to the `init=` program vmtest named.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::sys::stat::{Mode, SFlag, makedev, mknod};

/// Modules loaded at boot, with their dependencies; names a kernel builds in are skipped.
pub const MODULES: &[&str] = &[
    // vmtest: its 9p root and the virtio-serial ports of its guest agent.
    "virtio_pci",
    "virtio_console",
    "9p",
    "9pnet_virtio",
    // the suite's topologies and attach points
    "veth",
    "dummy",
    "sch_ingress",
    "cls_bpf",
    "act_bpf",
    "rc_loopback",
];

/// The initramfs's `/init`: loads the modules, mounts vmtest's 9p root, hands over to its init.
pub const INIT: &str = r#"#!/bin/busybox sh
# bpfconf initramfs: load modules, mount vmtest's 9p root, hand over to vmtest's init.
bb=/bin/busybox
$bb mkdir -p /proc /dev /newroot
$bb mount -t proc proc /proc
$bb mount -t devtmpfs devtmpfs /dev
for m in $($bb cat /modules); do
  $bb insmod "/lib/modules/$m" || echo "bpfconf-initramfs: insmod $m failed"
done
init=/sbin/init
flags=trans=virtio
for arg in $($bb cat /proc/cmdline); do
  case "$arg" in
    init=*) init="${arg#init=}" ;;
    rootflags=*) flags="${arg#rootflags=}" ;;
  esac
done
# vmtest asks for cache=mmap; loose caching makes every exec and path lookup a local hit instead of a
# 9p round trip (ip, python3: 3-4x faster under emulation). The guest is the root's only writer while
# it runs; ci/vm-suite syncs before the VM stops.
flags=$(echo "$flags" | $bb sed "s/cache=mmap/cache=loose/")
if ! $bb mount -t 9p -o "$flags" /dev/root /newroot; then
  echo "bpfconf-initramfs: cannot mount the 9p root (flags $flags)"
  $bb poweroff -f
fi
$bb umount /dev
$bb umount /proc
exec $bb switch_root /newroot "$init"
"#;

/// Builds `out` (newc cpio) for a kernel whose modules live in `root/lib/modules/<release>` (after
/// `depmod -b root`), or with no modules at all (`root` = None: everything built in). Returns the
/// module files it loads, in order.
pub fn build(root: Option<(&Path, &str)>, out: &Path) -> Result<Vec<String>> {
    let busybox = Path::new("/bin/busybox");
    if !busybox.exists() {
        bail!("/bin/busybox is missing: install busybox-static (run ci/setup)");
    }
    let staging = tempfile::tempdir_in(out.parent().unwrap_or(Path::new(".")))
        .context("creating a staging dir")?;
    let s = staging.path();
    for dir in ["bin", "dev", "proc", "newroot", "lib/modules"] {
        fs::create_dir_all(s.join(dir))?;
    }
    fs::copy(busybox, s.join("bin/busybox")).context("copying busybox")?;
    fs::write(s.join("init"), INIT)?;
    fs::set_permissions(s.join("init"), fs::Permissions::from_mode(0o755))?;
    // The kernel opens /dev/console of the initramfs for init's output.
    mknod(
        &s.join("dev/console"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o600),
        makedev(5, 1),
    )
    .context("creating dev/console")?;

    let mut loaded = Vec::new();
    if let Some((root, release)) = root {
        for (n, module) in module_files(root, release)?.iter().enumerate() {
            let name = format!("{n:02}-{}", module_name(module));
            decompress(module, &s.join("lib/modules").join(&name))?;
            loaded.push(name);
        }
    }
    fs::write(s.join("modules"), loaded.join("\n"))?;

    let tmp = out.with_extension("cpio.tmp");
    duct::cmd!("sh", "-c", "find . | cpio -o -H newc --quiet")
        .dir(s)
        .stdout_path(&tmp)
        .run()
        .context("packing the initramfs with cpio (install cpio: run ci/setup)")?;
    fs::rename(&tmp, out)?;
    Ok(loaded)
}

/// The module files to load for [`MODULES`], dependencies first (`modprobe --show-depends`).
fn module_files(root: &Path, release: &str) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = Vec::new();
    for module in MODULES {
        let out = duct::cmd!(
            "modprobe",
            "-d",
            root,
            "-S",
            release,
            "--show-depends",
            module
        )
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .context("running modprobe (install kmod: run ci/setup)")?;
        // A module this kernel lacks (or builds in) prints no insmod line; it is skipped.
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(path) = line.strip_prefix("insmod ") {
                let path = PathBuf::from(path.split_whitespace().next().unwrap_or_default());
                if !files.contains(&path) {
                    files.push(path);
                }
            }
        }
    }
    Ok(files)
}

fn module_name(path: &Path) -> String {
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = file.split(".ko").next().unwrap_or(&file);
    format!("{stem}.ko")
}

/// Copies a module, decompressing `.ko.xz` / `.ko.zst` (busybox insmod takes plain `.ko`).
fn decompress(from: &Path, to: &Path) -> Result<()> {
    let name = from.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        "xz"
    } else if name.ends_with(".zst") {
        "zstd"
    } else {
        fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
        return Ok(());
    };
    duct::cmd!(tool, "-dc", from)
        .stdout_path(to)
        .run()
        .with_context(|| {
            format!(
                "decompressing {} with {tool} (run ci/setup)",
                from.display()
            )
        })?;
    Ok(())
}
