//! BPF_MAP_TYPE_STACK_TRACE (`programs/src/bpf/map_stack_trace.bpf.c`): a raw tracepoint on
//! sys_enter stores the user stack of every getppid(2) of the test thread with bpf_get_stackid in
//! two maps of two buckets each, `plain` and `reused` (BPF_F_REUSE_STACKID).
//!
//! The stacks are made by functions of this module written for it: Rust code here is built
//! without frame pointers, which the kernel's user stack walk follows, so [`stack_root`],
//! [`stack_descend`] and [`stack_leaf`] are naked functions that keep a frame-pointer chain:
//! `stack_root(depth)` ends the chain (a zero link) and calls `stack_descend`, which recurses
//! `depth` times and calls `stack_leaf`, which makes the system call. A stack of depth `d` is
//! therefore exactly `stack_leaf`, `stack_descend` × (d + 1), `stack_root` and [`getppid_at`]
//! (root's caller), innermost first, symbolized with blazesym.
//!
//! `same_stack_same_id_and_reuse_replaces`: depth 0 twice gets one id (the same call stack, the
//! same id, in both maps). Then deeper stacks, one at a time, until one hashes to the occupied
//! bucket; one that lands in the empty bucket is a different id and is deleted from user space
//! again (its element freed for the next try; the chance that 32 stacks all miss is 2^-32). The
//! colliding stack gets `-EEXIST` from `plain` and the occupied id from `reused`: `plain` still
//! holds the depth-0 stack there, `reused` the new one. Both read back frame for frame as the
//! functions above. The colliding stack once more: `reused` knows it (the same id), `plain`
//! still refuses it.

use std::mem::MaybeUninit;

use blazesym::symbolize::source::{Process, Source};
use blazesym::symbolize::{Input, Symbolizer};
use libbpf_rs::libbpf_sys;
use libbpf_rs::skel::Skel;
use libbpf_rs::{MapCore, MapFlags, MapType, ProgramType};
use programs::map_stack_trace::{MapStackTraceSkel, MapStackTraceSkelBuilder};
use testkit::{Case, CaseError, CaseResult, OrError, probe};

/// The innermost frame: getppid(2) by the `syscall` instruction, inside a frame of its own.
// SAFETY: the assembly is the whole function and keeps the System V ABI (callee-saved registers
// restored, result in rax, `ret`).
#[unsafe(naked)]
extern "C" fn stack_leaf() -> u64 {
    core::arch::naked_asm!(
        "push rbp",
        "mov rbp, rsp",
        "mov eax, 110", // __NR_getppid
        "syscall",
        "pop rbp",
        "ret",
    )
}

/// `depth` more frames (its first argument, rdi), then [`stack_leaf`].
// SAFETY: the assembly is the whole function and keeps the System V ABI (callee-saved registers
// restored, result in rax, `ret`).
#[unsafe(naked)]
extern "C" fn stack_descend(depth: u64) -> u64 {
    core::arch::naked_asm!(
        "push rbp",
        "mov rbp, rsp",
        "test rdi, rdi",
        "jz 2f",
        "dec rdi",
        "call {descend}",
        "jmp 3f",
        "2:",
        "call {leaf}",
        "3:",
        "pop rbp",
        "ret",
        descend = sym stack_descend,
        leaf = sym stack_leaf,
    )
}

/// The outermost frame of the chain: its link to the caller's frame is zero while
/// [`stack_descend`] runs (the kernel's walk stops there), restored before it returns.
// SAFETY: the assembly is the whole function and keeps the System V ABI (callee-saved registers
// restored, result in rax, `ret`).
#[unsafe(naked)]
extern "C" fn stack_root(depth: u64) -> u64 {
    core::arch::naked_asm!(
        "push rbp",
        "mov rbp, rsp",
        "push rbx",
        "sub rsp, 8",
        "mov rbx, [rbp]",
        "mov qword ptr [rbp], 0",
        "call {descend}",
        "mov [rbp], rbx",
        "add rsp, 8",
        "pop rbx",
        "pop rbp",
        "ret",
        descend = sym stack_descend,
    )
}

/// getppid(2) from a stack `depth` frames deep; the parent's pid.
#[inline(never)]
fn getppid_at(depth: u64) -> u64 {
    stack_root(depth)
}

/// What the kernel answered for each call so far: (`plain`'s id, `reused`'s id).
fn ids(skel: &MapStackTraceSkel) -> Vec<(i64, i64)> {
    let bss = skel.maps.bss_data.as_deref().expect(".bss");
    (0..bss.calls as usize)
        .map(|i| (bss.plain_ids[i], bss.reused_ids[i]))
        .collect()
}

/// The frames stored under `id` in `map`, symbolized (module path stripped).
fn frames(symbolizer: &Symbolizer, map: &dyn MapCore, id: i64) -> CaseResult<Vec<String>> {
    let value = map
        .lookup(&(id as u32).to_ne_bytes(), MapFlags::ANY)?
        .ok_or_else(|| CaseError::Fail(anyhow::anyhow!("stack id {id} holds no stack")))?;
    let ips: Vec<u64> = value
        .chunks_exact(8)
        .map(|ip| u64::from_ne_bytes(ip.try_into().expect("8 bytes")))
        .take_while(|&ip| ip != 0)
        .collect();
    let src = Source::Process(Process::new(blazesym::Pid::Slf));
    let syms = symbolizer
        .symbolize(&src, Input::AbsAddr(&ips))
        .or_error("symbolizing the stack")?;
    Ok(syms
        .iter()
        .map(|s| match s.as_sym() {
            Some(sym) => sym.name.rsplit("::").next().unwrap_or_default().to_owned(),
            None => "?".to_owned(),
        })
        .collect())
}

/// The frames a stack of `depth` must show, innermost first.
fn expected(depth: u64) -> Vec<String> {
    let mut want = vec!["stack_leaf".to_owned()];
    want.extend((0..=depth).map(|_| "stack_descend".to_owned()));
    want.extend(["stack_root".to_owned(), "getppid_at".to_owned()]);
    want
}

#[test]
fn same_stack_same_id_and_reuse_replaces() {
    Case::run(ProgramType::RawTracepoint, |case| {
        probe::map_type(MapType::StackTrace, "map_type.stack_trace")?;
        probe::helper(
            ProgramType::RawTracepoint,
            libbpf_sys::BPF_FUNC_get_stackid,
            "bpf_get_stackid",
        )?;
        let mut object = MaybeUninit::uninit();
        let mut skel =
            case.open_load(MapStackTraceSkelBuilder::default(), &mut object, |open| {
                open.maps.bss_data.as_deref_mut().expect(".bss").tid =
                    nix::unistd::gettid().as_raw() as u32;
            })?;
        // Asked before the program watches: every getppid(2) of this thread is one of its calls.
        let ppid = u64::from(std::os::unix::process::parent_id());
        skel.attach()?;
        let symbolizer = Symbolizer::new();

        assert_eq!(getppid_at(0), ppid, "the system call answered");
        getppid_at(0);
        let calls = ids(&skel);
        let (first, _) = calls[0];
        assert!(first == 0 || first == 1, "an id of two buckets: {calls:?}");
        assert_eq!(calls, [(first, first); 2], "the same stack, the same id");

        let mut collided = None;
        for depth in 1..=32 {
            getppid_at(depth);
            let (plain, reused) = *ids(&skel).last().expect("a call");
            if plain == -i64::from(libc::EEXIST) {
                assert_eq!(
                    reused, first,
                    "depth {depth}: replaced in the occupied bucket"
                );
                collided = Some(depth);
                break;
            }
            assert_eq!(
                (plain, reused),
                (1 - first, 1 - first),
                "depth {depth}: a different stack in the empty bucket"
            );
            // Free the bucket again for the next try.
            skel.maps.plain.delete(&(plain as u32).to_ne_bytes())?;
            skel.maps.reused.delete(&(reused as u32).to_ne_bytes())?;
        }
        case.detail("ids", ids(&skel));
        let depth = collided.ok_or_else(|| {
            CaseError::Fail(anyhow::anyhow!("32 stacks, none in the occupied bucket"))
        })?;
        assert_eq!(frames(&symbolizer, &skel.maps.plain, first)?, expected(0));
        assert_eq!(
            frames(&symbolizer, &skel.maps.reused, first)?,
            expected(depth)
        );

        getppid_at(depth);
        assert_eq!(
            *ids(&skel).last().expect("a call"),
            (-i64::from(libc::EEXIST), first),
            "the replacing stack again"
        );
        Ok(())
    });
}
