//! uprobe and uretprobe (`programs/src/bpf/uprobe.bpf.c`) on [`bpfconf_uprobe_target`], a
//! function of this test binary, attached for this process by symbol name (libbpf finds its
//! offset in the binary's ELF symbol table). The test calls it with [`CALLS`]; the entry program
//! must have seen exactly those argument pairs in that order and the return program exactly the
//! values the calls returned, less only runs the kernel reports skipped.

use std::mem::MaybeUninit;
use std::os::fd::AsFd;

use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{ProgramType, UprobeOpts};
use programs::uprobe::UprobeSkelBuilder;
use testkit::observe::volatile;
use testkit::{Case, OrError, floors, runs};

/// The argument pairs of the calls the test makes.
const CALLS: [(u64, u64); 3] = [(1, 2), (0xdead_beef, 7), (u64::MAX, 0x1234)];
const UPROBE: &str = "attach_type.uprobe";

/// The probed function: its own symbol, never inlined, two integer arguments and an integer
/// result in registers (System V).
// SAFETY: no other symbol of the binary has this name.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn bpfconf_uprobe_target(a: u64, b: u64) -> u64 {
    a.wrapping_mul(31) ^ b
}

#[test]
fn arguments_and_returns_of_known_calls() {
    Case::run(ProgramType::Kprobe, |case| {
        let mut object = MaybeUninit::uninit();
        let skel = case.load(UprobeSkelBuilder::default().open(&mut object)?)?;
        if !floors::has(UPROBE, true) {
            return Err(floors::missing(UPROBE, "not attached"));
        }
        let binary = std::env::current_exe().or_error("finding the test binary")?;
        let pid = nix::unistd::getpid().as_raw();
        let attach = |prog: &libbpf_rs::ProgramMut<'_>, retprobe: bool| {
            let opts = UprobeOpts {
                func_name: Some("bpfconf_uprobe_target".into()),
                retprobe,
                ..Default::default()
            };
            prog.attach_uprobe_with_opts(pid, &binary, 0, opts)
                .map_err(|e| {
                    floors::missing(
                        UPROBE,
                        format!(
                            "attaching to bpfconf_uprobe_target in {}: {e:#}",
                            binary.display()
                        ),
                    )
                })
        };
        let _entry = attach(&skel.progs.target_entry, false)?;
        let _return = attach(&skel.progs.target_return, true)?;

        // Through an opaque pointer: the compiler can neither inline nor fold the calls.
        let target: extern "C" fn(u64, u64) -> u64 = std::hint::black_box(bpfconf_uprobe_target);
        let results: Vec<u64> = CALLS.iter().map(|&(a, b)| target(a, b)).collect();

        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
        let (entries, returns) = (volatile(&bss.entries), volatile(&bss.returns));
        let (entry_a, entry_b) = (volatile(&bss.entry_a), volatile(&bss.entry_b));
        let returned = volatile(&bss.returned);
        let seen: Vec<(u64, u64)> = (0..entries.min(8) as usize)
            .map(|i| (entry_a[i], entry_b[i]))
            .collect();
        let came_back = returned[..returns.min(8) as usize].to_vec();
        case.detail("entries", &seen);
        case.detail("returns", &came_back);
        let skipped = runs::misses(skel.progs.target_entry.as_fd())?
            + runs::misses(skel.progs.target_return.as_fd())?;
        runs::all_recorded("calls (a, b)", &CALLS, &seen, skipped)?;
        runs::all_recorded("return values", &results, &came_back, skipped)?;
        Ok(())
    });
}
