//! `bpfconf kernels fetch`: download a kernel's pinned packages (hash-checked), extract vmlinuz and
//! modules, and build its initramfs, into the cache. Idempotent, locked per kernel (two runs never
//! fetch the same kernel at once), and atomic: files are written under temporary names and renamed,
//! so an interrupted run never leaves a file that a later run trusts.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use super::apt::Apt;
use super::{KernelSpec, Kind, Prepared, cache_dir, initramfs, kernel_dir, source};

/// Makes `spec` ready to boot, doing only what the cache lacks; `say` reports each step.
pub fn fetch(spec: &KernelSpec, say: &dyn Fn(&str)) -> Result<Prepared> {
    let dir = kernel_dir(&spec.id);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let lock = File::create(cache_dir().join(format!("{}.lock", spec.id)))?;
    lock.lock().context("locking the kernel cache")?;

    let pins = pins(spec)?;
    if fs::read_to_string(dir.join("pins")).ok().as_deref() == Some(pins.as_str())
        && let Some(ready) = Prepared::cached(&spec.id)
    {
        return Ok(ready);
    }
    let _ = fs::remove_file(dir.join("ready"));
    match spec.kind {
        Kind::Debian => fetch_debian(spec, &dir, say)?,
        Kind::Local => prepare_local(spec, &dir, say)?,
        Kind::Source => prepare_source(spec, &dir, say)?,
        Kind::Host => bail!("kernel `host` is the running kernel: nothing to fetch"),
    }
    fs::write(dir.join("pins"), pins)?;
    Prepared::cached(&spec.id)
        .with_context(|| format!("kernel {}: preparing it left no vmlinuz/initramfs", spec.id))
}

/// What the cached artefacts were made from; a change invalidates them.
pub fn pins(spec: &KernelSpec) -> Result<String> {
    let mut s: String = spec
        .packages
        .iter()
        .map(|p| format!("{} {} {}\n", p.name, p.version, p.sha256))
        .collect();
    if let Some(v) = &spec.vmlinuz {
        s.push_str(&format!("vmlinuz {}\n", v.display()));
    }
    s.push_str(&format!("modules {:?}\n", initramfs::MODULES));
    s.push_str(&format!("init {:x}\n", Sha256::digest(initramfs::INIT)));
    s.push_str("config kept\n");
    s.push_str("vmlinuz uncompressed pvh\n");
    if spec.kind == Kind::Source {
        s.push_str(&format!("source build {}\n", source::key(spec)?));
    }
    Ok(s)
}

fn fetch_debian(spec: &KernelSpec, dir: &Path, say: &dyn Fn(&str)) -> Result<()> {
    let apt = Apt::new(&cache_dir())?;
    let debs = dir.join("debs");
    fs::create_dir_all(&debs)?;
    let mut updated = false;
    let mut files = Vec::new();
    for package in &spec.packages {
        files.push(apt.download_pinned(spec, package, &debs, &mut updated, say)?);
    }

    say("extracting");
    let root = dir.join("root");
    let _ = fs::remove_dir_all(&root);
    for deb in &files {
        duct::cmd!("dpkg-deb", "-x", deb, &root)
            .run()
            .with_context(|| format!("extracting {}", deb.display()))?;
    }
    let (vmlinuz, release) = find_kernel(&root)
        .with_context(|| format!("kernel {}: no vmlinuz in its packages", spec.id))?;
    say("initramfs");
    let modules_root = modules_root(&root)?;
    // Its warnings (7.x packages ship no modules.builtin) only matter when it fails.
    let depmod = duct::cmd!("depmod", "-b", &modules_root, &release)
        .stderr_capture()
        .unchecked()
        .run()
        .context("running depmod (install kmod: run ci/setup)")?;
    if !depmod.status.success() {
        bail!(
            "depmod failed: {}",
            String::from_utf8_lossy(&depmod.stderr).trim()
        );
    }
    keep_config(&root, &release, dir)?;
    finish(dir, &vmlinuz, Some((&modules_root, &release)), &release)?;
    fs::remove_dir_all(&root)?;
    Ok(())
}

/// A kernel built from source ([`source::build`]): everything built in, so its initramfs loads
/// no modules (it only mounts the 9p root as the Debian kernels' does).
fn prepare_source(spec: &KernelSpec, dir: &Path, say: &dyn Fn(&str)) -> Result<()> {
    let built = source::build(spec, say)?;
    say("initramfs");
    let tmp = dir.join("config.tmp");
    fs::copy(&built.config, &tmp)?;
    fs::rename(&tmp, dir.join("config"))?;
    finish(dir, &built.bzimage, None, &built.release)
}

fn prepare_local(spec: &KernelSpec, dir: &Path, say: &dyn Fn(&str)) -> Result<()> {
    let vmlinuz = spec
        .vmlinuz
        .as_ref()
        .with_context(|| format!("kernel {}: kind = local needs vmlinuz", spec.id))?;
    say("initramfs");
    match &spec.modules {
        Some(modules) => {
            let release = modules
                .file_name()
                .map(|r| r.to_string_lossy().into_owned())
                .unwrap_or_default();
            // modules = <root>/lib/modules/<release>
            let root = modules
                .ancestors()
                .nth(3)
                .context("modules must be <root>/lib/modules/<release>")?;
            finish(dir, vmlinuz, Some((root, &release)), &release)
        }
        None => finish(dir, vmlinuz, None, "local"),
    }
}

/// Writes the kernel to boot (as [`boot_image`]), builds the initramfs, and marks the kernel ready.
fn finish(dir: &Path, vmlinuz: &Path, modules: Option<(&Path, &str)>, release: &str) -> Result<()> {
    let tmp = dir.join("vmlinuz.tmp");
    fs::write(&tmp, boot_image(vmlinuz)?)?;
    fs::rename(&tmp, dir.join("vmlinuz"))?;
    let loaded = initramfs::build(modules, &dir.join("initramfs.cpio"))?;
    fs::write(dir.join("modules.txt"), loaded.join("\n"))?;
    fs::write(dir.join("ready"), release)?;
    Ok(())
}

/// The cache's `vmlinuz`: the kernel ELF inside a bzImage, uncompressed, when it has a PVH entry
/// (QEMU boots that directly, skipping the decompressor: 3-4 s of every boot under emulation for an
/// xz kernel, 0.5 s for zstd); else the image as it is.
fn boot_image(vmlinuz: &Path) -> Result<Vec<u8>> {
    let image = fs::read(vmlinuz).with_context(|| format!("reading {}", vmlinuz.display()))?;
    let elf = match bzimage_payload(&image) {
        Some(payload) => initramfs::decompress(payload)
            .with_context(|| format!("decompressing the kernel in {}", vmlinuz.display()))?,
        None => None,
    };
    Ok(elf.filter(|elf| has_pvh_entry(elf)).unwrap_or(image))
}

/// The compressed kernel of a bzImage (boot protocol 2.08 on: `payload_offset`, `payload_length`).
fn bzimage_payload(image: &[u8]) -> Option<&[u8]> {
    let u32_at = |at: usize| Some(u32::from_le_bytes(image.get(at..at + 4)?.try_into().ok()?));
    let version = u16::from_le_bytes(image.get(0x206..0x208)?.try_into().ok()?);
    if image.get(0x202..0x206)? != b"HdrS" || version < 0x208 {
        return None;
    }
    let setup_sects = match *image.get(0x1f1)? {
        0 => 4,
        n => usize::from(n),
    };
    let start = (setup_sects + 1) * 512 + usize::try_from(u32_at(0x248)?).ok()?;
    image.get(start..start + usize::try_from(u32_at(0x24c)?).ok()?)
}

/// Whether `elf` is a 64-bit kernel with Xen's PVH entry note, which QEMU's `-kernel` boots.
fn has_pvh_entry(elf: &[u8]) -> bool {
    use object::read::elf::{ElfFile64, ProgramHeader};
    const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
    let Ok(file) = ElfFile64::<object::Endianness>::parse(elf) else {
        return false;
    };
    let endian = file.endian();
    file.elf_program_headers().iter().any(|segment| {
        let Ok(Some(mut notes)) = segment.notes(endian, elf) else {
            return false;
        };
        while let Ok(Some(note)) = notes.next() {
            if note.name() == b"Xen" && note.n_type(endian) == XEN_ELFNOTE_PHYS32_ENTRY {
                return true;
            }
        }
        false
    })
}

/// Keeps the kernel's build config as `<dir>/config` (the harness reads it inside the VM through
/// `BPFCONF_KCONFIG`): `boot/config-<release>` (≤ 6.12) or `…/modules/<release>/config` (7.x).
fn keep_config(root: &Path, release: &str, dir: &Path) -> Result<()> {
    let candidates = [
        root.join(format!("boot/config-{release}")),
        root.join(format!("usr/lib/modules/{release}/config")),
        root.join(format!("lib/modules/{release}/config")),
    ];
    let config = candidates
        .iter()
        .find(|p| p.is_file())
        .with_context(|| format!("the packages of kernel {release} hold no build config"))?;
    let tmp = dir.join("config.tmp");
    fs::copy(config, &tmp)?;
    fs::rename(&tmp, dir.join("config"))?;
    Ok(())
}

/// vmlinuz and the release: `boot/vmlinuz-<release>` (≤ 6.12) or `usr/lib/modules/<release>/vmlinuz` (7.x).
fn find_kernel(root: &Path) -> Option<(PathBuf, String)> {
    if let Ok(entries) = fs::read_dir(root.join("boot")) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(release) = name.strip_prefix("vmlinuz-") {
                return Some((e.path(), release.to_owned()));
            }
        }
    }
    for modules in [root.join("usr/lib/modules"), root.join("lib/modules")] {
        for e in fs::read_dir(modules).into_iter().flatten().flatten() {
            if e.path().join("vmlinuz").exists() {
                return Some((
                    e.path().join("vmlinuz"),
                    e.file_name().to_string_lossy().into_owned(),
                ));
            }
        }
    }
    None
}

/// A root whose `lib/modules/<release>` holds the modules (depmod -b and modprobe -d want that):
/// 7.x packages ship them under `usr/lib/modules`.
fn modules_root(root: &Path) -> Result<PathBuf> {
    if !root.join("lib/modules").exists() && root.join("usr/lib/modules").exists() {
        std::os::unix::fs::symlink("usr/lib", root.join("lib"))?;
    }
    Ok(root.to_owned())
}
