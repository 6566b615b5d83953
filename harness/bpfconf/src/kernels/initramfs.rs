//! The initramfs that lets vmtest boot a distribution kernel: vmtest needs 9p and virtio built in,
//! Debian builds them as modules. Its `/init` (busybox) loads those and the modules the suite needs,
//! mounts vmtest's 9p root (`/dev/root`, with the `rootflags=` vmtest puts on the command line) and
//! hands over to the `init=` program vmtest named. Written here as a newc archive: its device node
//! is an entry, nothing is created on the host.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cpio::newc::{Builder, ModeFileType, trailer};

/// Modules loaded at boot, with their dependencies; names a kernel builds in are skipped. The
/// suite's own cost little (6.1 under emulation: 0.08 s of a 0.27 s /init) and nearly every run
/// needs them, so they are loaded here rather than on first use.
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

/// The initramfs's `/init`: loads the modules, mounts vmtest's 9p root, hands /dev over to it
/// (devtmpfs with /dev/shm and /dev/fd, as vmtest's init would make it: that init then skips
/// those steps, each a process started from the 9p root), and execs vmtest's init. Busybox applets
/// run as processes too, so the script uses the shell's builtins where it can.
pub const INIT: &str = r#"#!/bin/busybox sh
# bpfconf initramfs: load modules, mount vmtest's 9p root, hand over to vmtest's init.
bb=/bin/busybox
$bb mount -t proc proc /proc
$bb mount -t devtmpfs -o nosuid,noexec devtmpfs /dev
while read -r m; do
  $bb insmod "/lib/modules/$m" || echo "bpfconf-initramfs: insmod $m failed"
done < /modules
init=/sbin/init
flags=trans=virtio
read -r cmdline < /proc/cmdline
for arg in $cmdline; do
  case "$arg" in
    init=*) init="${arg#init=}" ;;
    rootflags=*) flags="${arg#rootflags=}" ;;
  esac
done
# vmtest asks for cache=mmap; loose caching makes every exec and path lookup a local hit instead of a
# 9p round trip (ip, python3: 3-4x faster under emulation). The guest is the root's only writer while
# it runs; ci/vm-suite syncs before the VM stops.
flags="${flags/cache=mmap/cache=loose}"
if ! $bb mount -t 9p -o "$flags" /dev/root /newroot; then
  echo "bpfconf-initramfs: cannot mount the 9p root (flags $flags)"
  $bb poweroff -f
fi
$bb mkdir /dev/shm
$bb mount -t tmpfs -o nosuid,nodev tmpfs /dev/shm
$bb ln -s /proc/self/fd /dev/fd
$bb mount --move /dev /newroot/dev
$bb umount /proc
exec $bb switch_root /newroot "$init"
"#;

/// Builds `out` (newc cpio) for a kernel whose modules live in `root/lib/modules/<release>` (after
/// `depmod -b root`), or with no modules at all (`root` = None: everything built in). Returns the
/// module files it loads, in order.
pub fn build(root: Option<(&Path, &str)>, out: &Path) -> Result<Vec<String>> {
    let busybox = fs::read("/bin/busybox")
        .context("reading /bin/busybox (install busybox-static: run ci/setup)")?;
    let mut modules = Vec::new();
    if let Some((root, release)) = root {
        for (n, module) in module_files(root, release)?.iter().enumerate() {
            modules.push((
                format!("{n:02}-{}", module_name(module)),
                module_elf(module)?,
            ));
        }
    }
    let names: Vec<String> = modules.iter().map(|(name, _)| name.clone()).collect();

    let tmp = out.with_extension("cpio.tmp");
    let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut archive = Archive::new(BufWriter::new(file));
    for dir in ["bin", "dev", "proc", "newroot", "lib", "lib/modules"] {
        archive.dir(dir)?;
    }
    archive.file("bin/busybox", 0o755, &busybox)?;
    archive.file("init", 0o755, INIT.as_bytes())?;
    // The kernel opens /dev/console of the initramfs for init's output.
    archive.char_device("dev/console", 0o600, (5, 1))?;
    for (name, elf) in &modules {
        archive.file(&format!("lib/modules/{name}"), 0o644, elf)?;
    }
    let list: String = names.iter().map(|name| format!("{name}\n")).collect();
    archive.file("modules", 0o644, list.as_bytes())?;
    archive
        .finish()?
        .into_inner()
        .map_err(io::IntoInnerError::into_error)?
        .sync_all()?;
    fs::rename(&tmp, out)?;
    Ok(names)
}

/// A newc archive being written: every entry owned by root, dated 0, with an inode of its own.
struct Archive<W: Write> {
    out: W,
    ino: u32,
}

impl<W: Write> Archive<W> {
    fn new(out: W) -> Self {
        Archive { out, ino: 0 }
    }

    fn dir(&mut self, name: &str) -> io::Result<()> {
        self.entry(name, ModeFileType::Directory, 0o755, &[], (0, 0))
    }

    fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.entry(name, ModeFileType::Regular, perm, data, (0, 0))
    }

    fn char_device(&mut self, name: &str, perm: u32, dev: (u32, u32)) -> io::Result<()> {
        self.entry(name, ModeFileType::Char, perm, &[], dev)
    }

    fn entry(
        &mut self,
        name: &str,
        kind: ModeFileType,
        perm: u32,
        data: &[u8],
        (major, minor): (u32, u32),
    ) -> io::Result<()> {
        let size = u32::try_from(data.len())
            .map_err(|_| io::Error::other(format!("{name}: too large for a newc archive")))?;
        self.ino += 1;
        let mut writer = Builder::new(name)
            .ino(self.ino)
            .mode(perm)
            .set_mode_file_type(kind)
            .rdev_major(major)
            .rdev_minor(minor)
            .write(&mut self.out, size);
        writer.write_all(data)?;
        writer.finish()?;
        Ok(())
    }

    fn finish(mut self) -> io::Result<W> {
        trailer(&mut self.out)?;
        Ok(self.out)
    }
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

/// A module as busybox insmod takes it: plain ELF (`.ko.xz` and `.ko.zst` decompressed).
fn module_elf(path: &Path) -> Result<Vec<u8>> {
    let data = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let elf = decompress(&data)
        .with_context(|| format!("decompressing {}", path.display()))?
        .unwrap_or(data);
    if !elf.starts_with(b"\x7fELF") {
        bail!(
            "{}: neither an ELF module nor xz or zstd compressed",
            path.display()
        );
    }
    Ok(elf)
}

/// `data` decompressed if it is xz or zstd (modules from 6.12 on, kernel images), else `None`.
/// Whatever follows the first stream is ignored (a bzImage appends the decompressed size).
pub fn decompress(data: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    if data.starts_with(b"\xfd7zXZ\0") {
        lzma_rust2::XzReader::new(data, false).read_to_end(&mut out)?;
    } else if data.starts_with(b"\x28\xb5\x2f\xfd") {
        let mut zstd = ruzstd::decoding::StreamingDecoder::new(data).map_err(io::Error::other)?;
        zstd.read_to_end(&mut out)?;
        // ruzstd computes the frame's checksum but leaves the comparison to its caller.
        let frame = zstd.into_frame_decoder();
        if let Some(sum) = frame.get_checksum_from_data()
            && frame.get_calculated_checksum() != Some(sum)
        {
            return Err(io::Error::other("zstd: checksum mismatch"));
        }
    } else {
        return Ok(None);
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// "bpfconf\n" as `xz --check=crc32` (how kmod compresses modules) and `zstd` write it.
    const XZ: &[u8] = &[
        0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0x00, 0x01, 0x69, 0x22, 0xde, 0x36, 0x02, 0x00, 0x21,
        0x01, 0x16, 0x00, 0x00, 0x00, 0x74, 0x2f, 0xe5, 0xa3, 0x01, 0x00, 0x07, 0x62, 0x70, 0x66,
        0x63, 0x6f, 0x6e, 0x66, 0x0a, 0x00, 0x1e, 0x6d, 0xc5, 0xe9, 0x00, 0x01, 0x1c, 0x08, 0x44,
        0x60, 0x2a, 0xc8, 0x90, 0x42, 0x99, 0x0d, 0x01, 0x00, 0x00, 0x00, 0x00, 0x01, 0x59, 0x5a,
    ];
    const ZSTD: &[u8] = &[
        0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x58, 0x41, 0x00, 0x00, 0x62, 0x70, 0x66, 0x63, 0x6f, 0x6e,
        0x66, 0x0a, 0x7d, 0x87, 0xa3, 0xbd,
    ];

    #[test]
    fn decompresses_xz_and_zstd_whatever_follows_the_stream() {
        for data in [XZ, ZSTD] {
            let plain = Some(b"bpfconf\n".to_vec());
            assert_eq!(decompress(data).unwrap(), plain);
            // A bzImage's payload ends with the decompressed size.
            let sized = [data, &8u32.to_le_bytes()].concat();
            assert_eq!(decompress(&sized).unwrap(), plain);
            // Both store the text as is: a flipped bit in it fails the stream's checksum.
            let mut corrupt = data.to_vec();
            let at = data.windows(7).position(|w| w == b"bpfconf").unwrap();
            corrupt[at] ^= 0x01;
            assert!(decompress(&corrupt).is_err());
        }
        assert_eq!(decompress(b"\x7fELF\x02\x01").unwrap(), None);
    }

    #[test]
    fn archive_holds_init_busybox_and_the_console_node() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("initramfs.cpio");
        assert!(build(None, &out).unwrap().is_empty());

        let mut entries = BTreeMap::new();
        let mut file = File::open(&out).unwrap();
        loop {
            let mut reader = cpio::NewcReader::new(file).unwrap();
            let entry = reader.entry();
            if entry.is_trailer() {
                break;
            }
            let (name, mode, dev) = (
                entry.name().to_owned(),
                entry.mode(),
                (entry.rdev_major(), entry.rdev_minor()),
            );
            let mut data = Vec::new();
            reader.read_to_end(&mut data).unwrap();
            entries.insert(name, (mode, dev, data));
            file = reader.finish().unwrap();
        }
        assert_eq!(
            entries["init"],
            (0o100755, (0, 0), INIT.as_bytes().to_vec())
        );
        assert_eq!(entries["dev/console"], (0o020600, (5, 1), Vec::new()));
        assert_eq!(entries["lib/modules"].0, 0o040755);
        assert_eq!(entries["modules"].2, b"");
        let busybox = &entries["bin/busybox"];
        assert_eq!(
            (busybox.0, &busybox.2),
            (0o100755, &fs::read("/bin/busybox").unwrap())
        );
    }
}
