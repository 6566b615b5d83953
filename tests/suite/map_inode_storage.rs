//! BPF_MAP_TYPE_INODE_STORAGE (`programs/src/bpf/map_inode_storage.bpf.c`): a BPF LSM program on
//! file_open counts the opens of each inode by the test cgroup's tasks; user space reads the
//! counter by a file descriptor of the inode.
//!
//! `one_value_per_inode_created_on_demand`: files `one`, `two`, `three` and `link`, a hard link
//! to `one`. A child in the cgroup opens `one` twice and `link` once, `two` five times. Through
//! the test's own descriptors (outside the cgroup, not counted): `one` and `link` both hold 3 (one
//! inode, one element), `two` 5, `three` nothing (`ENOENT`: never opened by the cgroup). Deleted
//! from user space, `two`'s element is gone and `one`'s stays. Unlinked (both names) but still
//! open, `one`'s inode keeps its element; a new file under the name `one` is another inode,
//! without one. Opens whose get answered NULL (`missed`, see `testkit::local_storage`) are not
//! counted.

use std::fs::{self, File};
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use libbpf_rs::skel::{Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapType, ProgramType};
use programs::map_inode_storage::MapInodeStorageSkelBuilder;
use testkit::local_storage::{counter, value};
use testkit::observe::volatile;
use testkit::{Case, CaseError, CaseResult, Cgroup, OrError, child, ftrace, probe};

/// Opens `path` for reading.
fn open(path: &Path) -> CaseResult<File> {
    File::open(path).or_error(&format!("opening {}", path.display()))
}

/// A child in `cg` opens each of `paths`.
fn open_in(cg: &Cgroup, paths: &[&PathBuf]) -> CaseResult {
    child::in_cgroup(cg)
        .run(|| {
            for path in paths {
                child::errno(File::open(path))?;
            }
            Ok(())
        })?
        .map_err(|e: nix::errno::Errno| CaseError::Error(anyhow::anyhow!("opening: {e}")))
}

#[test]
fn one_value_per_inode_created_on_demand() {
    Case::run(ProgramType::Lsm, |case| {
        probe::map_type(MapType::InodeStorage, "map_type.inode_storage")?;
        let active = testkit::lsm::require_bpf_active()?;
        case.detail("active_lsms", &active);
        let cg = Cgroup::new()?;
        let cgroup_id = cg.id()?;
        let mut object = MaybeUninit::uninit();
        let mut open_skel = MapInodeStorageSkelBuilder::default().open(&mut object)?;
        open_skel
            .maps
            .bss_data
            .as_deref_mut()
            .expect(".bss")
            .cgroup_id = cgroup_id;
        let mut skel = ftrace::load(case, open_skel, "prog_type.lsm", "lsm/file_open")?;
        skel.attach()
            .map_err(|e| ftrace::attach_refused("prog_type.lsm", "attaching lsm/file_open", e))?;

        let dir = tempfile::tempdir().or_error("creating a temporary directory")?;
        let [one, two, three, link] = ["one", "two", "three", "link"].map(|n| dir.path().join(n));
        for file in [&one, &two, &three] {
            fs::write(file, b"x").or_error("writing a test file")?;
        }
        fs::hard_link(&one, &link).or_error("linking the test file")?;
        let bss = skel.maps.bss_data.as_deref().expect(".bss");
        let missed = || volatile(&bss.missed);
        open_in(&cg, &[&one, &one, &link])?;
        let one_missed = missed();
        open_in(&cg, &[&two, &two, &two, &two, &two])?;
        let two_missed = missed() - one_missed;

        let map = &skel.maps.opens;
        let files = [open(&one)?, open(&link)?, open(&two)?, open(&three)?];
        let counts = files.each_ref().map(|f| value(map, f));
        case.detail("counts", format!("{counts:?}"));
        case.detail("missed", [one_missed, two_missed]);
        let one_count = counter(None, 3, one_missed)?;
        assert_eq!(
            counts,
            [
                one_count,
                one_count,
                counter(None, 5, two_missed)?,
                Err(libc::ENOENT)
            ],
            "one, link, two, three"
        );
        map.delete(&files[2].as_raw_fd().to_ne_bytes())?;
        assert_eq!(
            [value(map, &files[0]), value(map, &files[2])],
            [one_count, Err(libc::ENOENT)],
            "two's element deleted from user space"
        );
        fs::remove_file(&one).or_error("unlinking one")?;
        fs::remove_file(&link).or_error("unlinking link")?;
        assert_eq!(value(map, &files[0]), one_count, "one unlinked, still open");
        drop(files);
        fs::write(&one, b"y").or_error("writing a new one")?;
        assert_eq!(
            value(map, &open(&one)?),
            Err(libc::ENOENT),
            "a new inode named one"
        );
        Ok(())
    });
}
