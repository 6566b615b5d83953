//! `BPF_MAP_TYPE_ARENA` (6.9+; `programs/src/bpf/map_arena.bpf.c`): memory a program and user
//! space share page by page, at the same addresses on both sides. Syscall programs run with
//! `BPF_PROG_TEST_RUN`; user space sees the arena through the mapping libbpf made when it created
//! the map. One case, `pages_shared_both_ways` (each load of an object calling a kfunc parses the
//! kernel's BTF, slow under emulation):
//!
//! - a page the program allocates (`bpf_arena_alloc_pages`) and fills lies inside the mapping,
//!   page-aligned, and user space reads exactly what the program wrote there;
//! - a word user space writes into a page nobody allocated (the write faults it in) is what the
//!   program reads at that address; so is a word user space writes into the program's page.
//!
//! Programs using an arena must be JITed: on the interpreter column the verifier's refusal of the
//! kfunc call makes the case `unsupported` (`platform.bpf_jit_disabled`).

use std::mem::MaybeUninit;

use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{AsRawLibbpf, MapCore, MapMut, ProgramInput, ProgramMut, ProgramType, libbpf_sys};
use programs::map_arena::MapArenaSkelBuilder;
use testkit::{Case, CaseResult, probe, test_run};

/// Words a fill writes, and the program's operations, as in map_arena.bpf.c.
const WORDS: usize = 4;
const FILL: u64 = 1;
const READ: u64 = 2;

/// The arena as user space maps it: its base (libbpf mapped it when it created the map) and size
/// (its `max_entries` pages).
fn mapping(arena: &MapMut<'_>) -> (*mut u64, usize) {
    let mut globals = 0;
    let map = arena.as_libbpf_object().as_ptr();
    // SAFETY: a loaded map of the skeleton; libbpf hands back its mapping's address (and the size
    // of the object's arena globals, none here).
    let base = unsafe { libbpf_sys::bpf_map__initial_value(map, &mut globals) };
    assert!(!base.is_null(), "libbpf mapped the arena");
    (base.cast(), arena.max_entries() as usize * page_size())
}

/// Runs `access` with the request (op, addr, value) and returns the (addr, value) it hands back.
fn run(prog: &ProgramMut<'_>, op: u64, addr: u64, value: u64) -> CaseResult<(u64, u64)> {
    let mut context: Vec<u8> = [op, addr, value]
        .iter()
        .flat_map(|v| v.to_ne_bytes())
        .collect();
    let input = ProgramInput {
        context_in: Some(&mut context),
        ..Default::default()
    };
    let ret = test_run::run("syscall", prog, input)?.return_value;
    assert_eq!(
        ret,
        0,
        "{} returned {}",
        prog.name().to_string_lossy(),
        ret as i32
    );
    let word =
        |i: usize| u64::from_ne_bytes(context[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    Ok((word(1), word(2)))
}

fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .expect("the page size") as usize
}

#[test]
fn pages_shared_both_ways() {
    Case::run(ProgramType::Syscall, |case| {
        probe::arena()?;
        probe::prog_type(ProgramType::Syscall)?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(MapArenaSkelBuilder::default().open(&mut object)?)?;
        let (base, size) = mapping(&skel.maps.arena);
        let access = &skel.progs.access;

        // The program's page, read by user space.
        let (addr, _) = run(access, FILL, 0, 7000)?;
        let offset = addr.wrapping_sub(base as u64) as usize;
        case.detail("arena", [base as u64, size as u64, addr]);
        assert!(
            offset < size,
            "the page at {addr:#x} lies in the mapping {base:?}+{size:#x}"
        );
        assert_eq!(offset % page_size(), 0, "the page is page-aligned");
        // SAFETY: the page lies inside the arena mapping (checked), which libbpf keeps for the
        // skeleton's lifetime.
        let words: Vec<u64> = (0..WORDS)
            .map(|i| unsafe { base.add(offset / 8 + i).read_volatile() })
            .collect();
        assert_eq!(
            words,
            [7000, 7001, 7002, 7003],
            "what the program wrote, read by user space"
        );

        // User space's writes, read by the program: into the program's page, and into the last
        // page, which nobody allocated (the write faults it in).
        let mine = offset / 8 + WORDS;
        let last = size / 8 - page_size() / 8 + 1;
        for (word, value) in [(mine, 0xfeed), (last, 0x5eed)] {
            // SAFETY: both words lie inside the arena mapping (the program's page, checked above,
            // and the mapping's last page).
            unsafe { base.add(word).write_volatile(value) };
            let (_, seen) = run(access, READ, base.wrapping_add(word) as u64, 0)?;
            assert_eq!(
                seen, value,
                "the program reads the word user space wrote at {word}"
            );
        }
        Ok(())
    });
}
