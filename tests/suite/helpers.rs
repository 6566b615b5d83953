//! Helpers that arrive inside the kernel matrix (5.10 … 7.3), one case and one object
//! (`programs/src/bpf/helper_<name>.bpf.c`) each, so a kernel without one helper still loads the
//! others. Each case probes its helpers first (`unsupported` below their floors, judged by
//! testkit::floors) and then checks what the helper did from outside: values in `.bss` or a map
//! after a BPF_PROG_TEST_RUN (no attach), records in a ring buffer, or what a kprobe saw of a
//! syscall the test made.

use std::mem::MaybeUninit;
use std::time::{Duration, Instant};

use libbpf_rs::libbpf_sys;
use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapCore, MapFlags, MapType, ProgramInput, ProgramMut, ProgramType};
use nix::time::{ClockId, clock_gettime};
use programs::helper_boot_ns::HelperBootNsSkelBuilder;
use programs::helper_find_vma::HelperFindVmaSkelBuilder;
use programs::helper_func_ip::HelperFuncIpSkelBuilder;
use programs::helper_loop::HelperLoopSkelBuilder;
use programs::helper_ringbuf::HelperRingbufSkelBuilder;
use programs::helper_snprintf::HelperSnprintfSkelBuilder;
use programs::helper_timer::HelperTimerSkelBuilder;
use testkit::{Case, CaseResult, OrError, floors, ksyscall, observe, probe, test_run};

/// A minimal Ethernet frame for the XDP test runs.
const FRAME: [u8; 64] = [0; 64];

/// Runs the XDP program `prog` once on [`FRAME`] and returns its verdict.
fn run_xdp(prog: &ProgramMut<'_>) -> CaseResult<u32> {
    let input = ProgramInput {
        data_in: Some(&FRAME),
        ..Default::default()
    };
    Ok(test_run::run("xdp", prog, input)?.return_value)
}

/// The calling thread's id.
fn gettid() -> u32 {
    nix::unistd::gettid().as_raw().unsigned_abs()
}

#[test]
fn loop_calls_back_n_times() {
    Case::run(ProgramType::Xdp, |case| {
        probe::helper(ProgramType::Xdp, libbpf_sys::BPF_FUNC_loop, "bpf_loop")?;
        let mut object = MaybeUninit::uninit();
        let mut skel = case.load(HelperLoopSkelBuilder::default().open(&mut object)?)?;
        // (iterations, stop_at) → expected calls: all of them, then a stop at index 41.
        for (iterations, stop_at, calls) in [(1000u32, u32::MAX, 1000u32), (1000, 41, 42)] {
            let bss = skel.maps.bss_data.as_deref_mut().expect(".bss");
            bss.iterations = iterations;
            bss.stop_at = stop_at;
            assert_eq!(run_xdp(&skel.progs.loop_sum)?, libbpf_sys::XDP_PASS);
            let bss = skel.maps.bss_data.as_deref().expect(".bss");
            let want_sum = u64::from(calls) * (u64::from(calls) + 1) / 2;
            case.detail(
                &format!("stop_at_{stop_at}"),
                [bss.ret, i64::from(bss.calls), bss.sum as i64],
            );
            assert_eq!(
                bss.ret,
                i64::from(calls),
                "bpf_loop's return (callback calls)"
            );
            assert_eq!(bss.calls, calls, "callback calls counted by the callback");
            assert_eq!(bss.sum, want_sum, "sum of index + 1 over the calls");
        }
        Ok(())
    });
}

/// `clock`'s reading in nanoseconds.
fn clock_ns(clock: ClockId) -> CaseResult<u64> {
    let ts = clock_gettime(clock).or_error("clock_gettime")?;
    Ok(ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64)
}

#[test]
fn ktime_get_boot_ns_is_boottime() {
    Case::run(ProgramType::Xdp, |case| {
        probe::helper(
            ProgramType::Xdp,
            libbpf_sys::BPF_FUNC_ktime_get_boot_ns,
            "bpf_ktime_get_boot_ns",
        )?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(HelperBootNsSkelBuilder::default().open(&mut object)?)?;
        let before = clock_ns(ClockId::CLOCK_BOOTTIME)?;
        assert_eq!(run_xdp(&skel.progs.read_boot_ns)?, libbpf_sys::XDP_PASS);
        let after = clock_ns(ClockId::CLOCK_BOOTTIME)?;
        let seen = skel.maps.bss_data.as_deref().expect(".bss").boot_ns;
        case.detail("window_ns", [before, seen, after]);
        // Time spent suspended: only when it exceeds the window does the check also tell boot
        // time from monotonic time (never on a machine that has not been suspended).
        let suspended = before.saturating_sub(clock_ns(ClockId::CLOCK_MONOTONIC)?);
        case.detail("boottime_minus_monotonic_ns", suspended);
        assert!(
            (before..=after).contains(&seen),
            "bpf_ktime_get_boot_ns() = {seen}, not between the CLOCK_BOOTTIME readings \
             {before} and {after} taken around the run"
        );
        Ok(())
    });
}

#[test]
fn snprintf_formats_exactly() {
    Case::run(ProgramType::Xdp, |case| {
        probe::helper(
            ProgramType::Xdp,
            libbpf_sys::BPF_FUNC_snprintf,
            "bpf_snprintf",
        )?;
        let mut object = MaybeUninit::uninit();
        let mut skel = case.load(HelperSnprintfSkelBuilder::default().open(&mut object)?)?;
        let pid = std::process::id();
        let (number, wide, padded, word) = (
            -(pid as i32),
            0xfeed_0000_0000_0000 | u64::from(pid),
            pid % 1000,
            "bpfconf",
        );
        let bss = skel.maps.bss_data.as_deref_mut().expect(".bss");
        bss.number = number;
        bss.wide = wide;
        bss.padded = padded;
        for (dst, src) in bss.word.iter_mut().zip(word.bytes()) {
            *dst = src as _;
        }
        assert_eq!(run_xdp(&skel.progs.format)?, libbpf_sys::XDP_PASS);
        let bss = skel.maps.bss_data.as_deref().expect(".bss");
        let out: Vec<u8> = bss.out.iter().map(|c| *c as u8).collect();
        let text = std::ffi::CStr::from_bytes_until_nul(&out)
            .or_error("the output buffer holds a NUL")?
            .to_string_lossy()
            .into_owned();
        let want = format!("n={number} w={word} x={wide:x} p={padded:05} %");
        case.detail("formatted", &text);
        case.detail("ret", bss.ret);
        assert_eq!(text, want, "bpf_snprintf's output");
        assert_eq!(
            bss.ret,
            want.len() as i64 + 1,
            "its return: length with the NUL"
        );
        Ok(())
    });
}

#[test]
fn timer_fires_its_callback() {
    Case::run(ProgramType::Xdp, |case| {
        for (id, name) in [
            (libbpf_sys::BPF_FUNC_timer_init, "bpf_timer_init"),
            (
                libbpf_sys::BPF_FUNC_timer_set_callback,
                "bpf_timer_set_callback",
            ),
            (libbpf_sys::BPF_FUNC_timer_start, "bpf_timer_start"),
        ] {
            probe::helper(ProgramType::Xdp, id, name)?;
        }
        let mut object = MaybeUninit::uninit();
        let mut skel = case.load(HelperTimerSkelBuilder::default().open(&mut object)?)?;
        let cookie = 0xc0c0_0000_0000_0000 | u64::from(std::process::id());
        let delay_ns = 2_000_000;
        let bss = skel.maps.bss_data.as_deref_mut().expect(".bss");
        bss.cookie = cookie;
        bss.delay_ns = delay_ns;
        let verdict = run_xdp(&skel.progs.arm)?;
        let err = skel.maps.bss_data.as_deref().expect(".bss").err;
        case.detail("arm_err", err);
        assert_eq!(
            (verdict, err),
            (libbpf_sys::XDP_PASS, 0),
            "arming the timer (verdict, helper error)"
        );
        // The callback runs in softirq context later: wait for its cookie, boundedly.
        let key = 0u32.to_ne_bytes();
        let deadline = Instant::now() + Duration::from_secs(5);
        let value = loop {
            let value = skel
                .maps
                .timers
                .lookup(&key, MapFlags::ANY)?
                .ok_or_else(|| {
                    testkit::CaseError::Fail(anyhow::anyhow!("the timer map has no entry 0"))
                })?;
            let word = |i: usize| u64::from_ne_bytes(value[i..i + 8].try_into().expect("8 bytes"));
            // struct elem: bpf_timer (16 bytes), cookie, armed_ns, fired_ns.
            if word(16) == cookie || Instant::now() >= deadline {
                break [word(16), word(24), word(32)];
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let [seen, armed_ns, fired_ns] = value;
        case.detail("armed_fired_ns", [armed_ns, fired_ns]);
        assert_eq!(seen, cookie, "the callback's cookie in the map within 5 s");
        assert!(
            fired_ns >= armed_ns + delay_ns,
            "the callback ran {} ns after arming, before the {delay_ns} ns delay",
            fired_ns.saturating_sub(armed_ns)
        );
        Ok(())
    });
}

#[test]
fn ringbuf_delivers_submitted_records_in_order() {
    Case::run(ProgramType::Xdp, |case| {
        probe::map_type(MapType::RingBuf, "map_type.ringbuf")?;
        for (id, name) in [
            (libbpf_sys::BPF_FUNC_ringbuf_reserve, "bpf_ringbuf_reserve"),
            (libbpf_sys::BPF_FUNC_ringbuf_submit, "bpf_ringbuf_submit"),
            (libbpf_sys::BPF_FUNC_ringbuf_discard, "bpf_ringbuf_discard"),
        ] {
            probe::helper(ProgramType::Xdp, id, name)?;
        }
        let mut object = MaybeUninit::uninit();
        let mut skel = case.load(HelperRingbufSkelBuilder::default().open(&mut object)?)?;
        const SENTINEL: u64 = u64::MAX;
        // Every third record (1, 4, 7, …) is discarded; the sentinel goes last.
        let discarded = |seq: u64| seq % 3 == 1;
        let sent: Vec<u64> = (0..30).chain([SENTINEL]).collect();
        for &seq in &sent {
            let bss = skel.maps.bss_data.as_deref_mut().expect(".bss");
            bss.seq = seq;
            bss.discard = u32::from(seq != SENTINEL && discarded(seq));
            assert_eq!(
                run_xdp(&skel.progs.emit)?,
                libbpf_sys::XDP_PASS,
                "reserving record {seq}"
            );
        }
        let mut arrived = Vec::new();
        let complete = observe::ring_buffer(&skel.maps.records, Duration::from_secs(5), |r| {
            let seq = u64::from_ne_bytes(r[..8].try_into().expect("8 bytes"));
            arrived.push(seq);
            seq == SENTINEL
        })?;
        let want: Vec<u64> = sent
            .iter()
            .copied()
            .filter(|s| *s == SENTINEL || !discarded(*s))
            .collect();
        case.detail("arrived", &arrived);
        assert!(
            complete,
            "the sentinel did not arrive within 5 s: {arrived:?}"
        );
        assert_eq!(
            arrived, want,
            "submitted records in order, no discarded one, then the sentinel"
        );
        Ok(())
    });
}

#[test]
fn get_func_ip_is_the_kallsyms_address() {
    Case::run(ProgramType::Kprobe, |case| {
        probe::helper(
            ProgramType::Kprobe,
            libbpf_sys::BPF_FUNC_get_func_ip,
            "bpf_get_func_ip",
        )?;
        probe::kprobes()?;
        let function = floors::judge("ksym.syscall_entry", ksyscall::resolve("getppid"))?;
        case.detail("function", &function.symbol);
        let kallsyms =
            std::fs::read_to_string("/proc/kallsyms").or_error("reading /proc/kallsyms")?;
        // "<address> <type> <symbol>" (module symbols end in "\t[module]"): a cheap suffix test
        // first, as kallsyms is large and emulated CPUs are slow.
        let suffix = format!(" {}", function.symbol);
        let addresses: Vec<u64> = kallsyms
            .lines()
            .filter(|line| line.ends_with(&suffix))
            .filter_map(|line| u64::from_str_radix(line.split_once(' ')?.0, 16).ok())
            .collect();
        let [address] = addresses[..] else {
            return Err(testkit::CaseError::Error(anyhow::anyhow!(
                "{} appears {} times in /proc/kallsyms",
                function.symbol,
                addresses.len()
            )));
        };
        let mut object = MaybeUninit::uninit();
        let skel = case.open_load(HelperFuncIpSkelBuilder::default(), &mut object, |open| {
            open.maps.bss_data.as_deref_mut().expect(".bss").tid = gettid();
        })?;
        let _link = skel.progs.func_ip.attach_kprobe(false, &function.symbol)?;
        ksyscall::getppid();
        let bss = skel.maps.bss_data.as_deref().expect(".bss");
        case.detail("hits", bss.hits);
        case.detail("ip_is_kallsyms", bss.ip == address);
        assert_eq!(bss.hits, 1, "kprobe runs for the test thread's one getppid");
        assert_eq!(
            bss.ip, address,
            "bpf_get_func_ip ({:#x}) against /proc/kallsyms' {} ({address:#x})",
            bss.ip, function.symbol
        );
        Ok(())
    });
}

/// A function of this binary whose mapping the find_vma case looks up.
#[inline(never)]
fn find_vma_target() -> u32 {
    std::hint::black_box(7)
}

#[test]
fn find_vma_finds_the_test_binarys_mapping() {
    Case::run(ProgramType::RawTracepoint, |case| {
        probe::helper(
            ProgramType::RawTracepoint,
            libbpf_sys::BPF_FUNC_find_vma,
            "bpf_find_vma",
        )?;
        probe::helper(
            ProgramType::RawTracepoint,
            libbpf_sys::BPF_FUNC_get_current_task_btf,
            "bpf_get_current_task_btf",
        )?;
        let address = find_vma_target as *const () as usize as u64;
        assert_eq!(find_vma_target(), 7);
        // /proc/self/maps: "start-end perms offset dev inode path".
        let maps =
            std::fs::read_to_string("/proc/self/maps").or_error("reading /proc/self/maps")?;
        let (start, end, path) = maps
            .lines()
            .find_map(|line| {
                let mut fields = line.split_whitespace();
                let (start, end) = fields.next()?.split_once('-')?;
                let (start, end) = (
                    u64::from_str_radix(start, 16).ok()?,
                    u64::from_str_radix(end, 16).ok()?,
                );
                let path = fields.nth(4)?.to_owned();
                (start..end)
                    .contains(&address)
                    .then_some((start, end, path))
            })
            .ok_or_else(|| anyhow::anyhow!("no mapping of {address:#x} in /proc/self/maps"))
            .or_error("finding find_vma_target's mapping")?;
        let file = path.rsplit('/').next().unwrap_or_default().to_owned();

        let mut object = MaybeUninit::uninit();
        let mut skel = case.load(HelperFindVmaSkelBuilder::default().open(&mut object)?)?;
        // bpf_find_vma only try-locks the mm (mmap_read_trylock) and answers EBUSY while another
        // thread of this process (the other tests') holds or waits for it: run again, and check
        // that a busy run never called back.
        let mut busy = 0u32;
        let answered = observe::poll(Duration::from_secs(5), || {
            let bss = skel.maps.bss_data.as_deref_mut().expect(".bss");
            (bss.ret, bss.found.calls) = (i64::MIN, u32::MAX);
            let mut ctx = address.to_ne_bytes();
            let input = ProgramInput {
                context_in: Some(&mut ctx),
                ..Default::default()
            };
            if let Err(e) = skel.progs.find.test_run(input) {
                return Some(Err(e));
            }
            let bss = skel.maps.bss_data.as_deref().expect(".bss");
            if bss.ret != -i64::from(libc::EBUSY) {
                return Some(Ok(()));
            }
            busy += 1;
            assert_eq!(bss.found.calls, 0, "callback calls of a run answered EBUSY");
            None
        })
        .transpose()?
        .is_some();
        case.detail("ebusy_runs", busy);
        assert!(
            answered,
            "bpf_find_vma answered EBUSY for 5 s ({busy} runs)"
        );
        let bss = skel.maps.bss_data.as_deref().expect(".bss");
        let found = &bss.found;
        let name: Vec<u8> = found.name.iter().map(|c| *c as u8).collect();
        let name = std::ffi::CStr::from_bytes_until_nul(&name)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        case.detail("ret", bss.ret);
        case.detail("found", [found.vm_start, found.vm_end]);
        case.detail("maps", [start, end]);
        case.detail("file", &name);
        assert_eq!(bss.ret, 0, "bpf_find_vma's return");
        assert_eq!(found.calls, 1, "callback calls");
        assert_eq!(
            (found.vm_start, found.vm_end),
            (start, end),
            "the mapping's bounds against /proc/self/maps"
        );
        assert_eq!(
            name, file,
            "the mapping's file name against /proc/self/maps"
        );
        Ok(())
    });
}
