//! A perf event program (`programs/src/bpf/perf_event.bpf.c`) attached to a sampling perf event of
//! one thread: a software cpu-clock event sampling a thread that burns CPU must deliver samples to
//! the program, all of them in that thread (the event counts only while the thread runs, so the
//! program sees no other thread: exactly 0 samples elsewhere). A hardware event the machine lacks
//! (no PMU in most VMs) is `unsupported` as a platform limit (`platform.hardware_pmu`), not `fail`;
//! a missing software event is judged against its floor (`perf.sw_cpu_clock`).

use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};

use libbpf_rs::{MapCore, MapFlags, ProgramType};
use perf_event_open_sys::bindings::{
    PERF_COUNT_HW_CPU_CYCLES, PERF_COUNT_SW_CPU_CLOCK, PERF_FLAG_FD_CLOEXEC, PERF_TYPE_HARDWARE,
    PERF_TYPE_SOFTWARE, perf_event_attr,
};
use programs::perf_event::PerfEventSkelBuilder;
use testkit::{Case, CaseError, CaseResult, floors, observe};

/// Samples of the burning thread the case waits for.
const SAMPLES: u64 = 20;

#[test]
fn software_cpu_clock() {
    Case::run(ProgramType::PerfEvent, |case| {
        sample_burning_thread(
            case,
            PERF_TYPE_SOFTWARE,
            PERF_COUNT_SW_CPU_CLOCK.into(),
            1_000_000,
            "perf.sw_cpu_clock",
        )
    });
}

#[test]
fn hardware_cpu_cycles() {
    Case::run(ProgramType::PerfEvent, |case| {
        sample_burning_thread(
            case,
            PERF_TYPE_HARDWARE,
            PERF_COUNT_HW_CPU_CYCLES.into(),
            1_000_000,
            "platform.hardware_pmu",
        )
    });
}

/// Burns CPU on a thread until [`SAMPLES`] samples came while a perf event of `type_`/`config` samples it every
/// `period` units, with the program attached; its map must count samples for that thread only.
/// `feature` is the floor id the event's absence is judged by.
fn sample_burning_thread(
    case: &mut Case,
    type_: u32,
    config: u64,
    period: u64,
    feature: &str,
) -> CaseResult {
    let stop = Arc::new(AtomicBool::new(false));
    let (tid_tx, tid_rx) = mpsc::channel();
    let burner = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            tid_tx
                .send(nix::unistd::gettid().as_raw())
                .expect("test thread waits");
            let mut x = 0u64;
            while !stop.load(Ordering::Relaxed) {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        })
    };
    let stop_burner = StopOnDrop(stop, Some(burner));
    let tid = tid_rx.recv().expect("burner thread starts");

    let event = open_sampling_event(type_, config, period, tid, feature)?;
    let mut object = MaybeUninit::uninit();
    let skel = case.open_load(PerfEventSkelBuilder::default(), &mut object, |open| {
        let rodata = open.maps.rodata_data.as_deref_mut().expect(".rodata");
        rodata.target_tid = tid as u32;
    })?;
    let _link = skel.progs.on_sample.attach_perf_event(event.as_raw_fd())?;
    // The link owns the perf event now: libbpf closes its fd on detach.
    let _ = event.into_raw_fd();

    let slot = |i: u32| -> libbpf_rs::Result<u64> {
        let v = skel
            .maps
            .samples
            .lookup(&i.to_ne_bytes(), MapFlags::ANY)?
            .expect("array slot exists");
        Ok(u64::from_ne_bytes(v[..8].try_into().expect("8 bytes")))
    };
    // Every 1 ms of the thread's CPU time is a sample; under emulation and beside other cases the
    // thread may get little CPU, so wait for the samples rather than for a fixed time.
    // A lookup error ends the wait; the read below reports it.
    observe::poll(observe::MUST_ARRIVE, || {
        slot(0).map_or(true, |n| n >= SAMPLES).then_some(())
    });
    drop(stop_burner);
    let (ours, others) = (slot(0)?, slot(1)?);
    case.detail("samples_of_thread", ours);
    case.detail("samples_of_other_threads", others);
    assert!(
        ours >= SAMPLES,
        "{ours} samples of the burning thread reached the program in {:?}, want {SAMPLES}",
        observe::MUST_ARRIVE
    );
    // The event is the thread's own: it only counts, and so only fires, while that thread runs.
    assert_eq!(others, 0, "samples the program saw in other threads");
    Ok(())
}

/// `perf_event_open` for one thread, sampling every `period`. No such event (ENOENT, EOPNOTSUPP,
/// ENODEV: e.g. no hardware PMU in a VM) is judged by the floor of `feature`.
fn open_sampling_event(
    type_: u32,
    config: u64,
    period: u64,
    tid: i32,
    feature: &str,
) -> CaseResult<OwnedFd> {
    if !floors::has(feature, true) {
        return Err(floors::missing(feature, "not opened"));
    }
    let mut attr = perf_event_attr {
        type_,
        size: std::mem::size_of::<perf_event_attr>() as u32,
        config,
        ..Default::default()
    };
    attr.__bindgen_anon_1.sample_period = period;
    attr.set_disabled(1);
    // SAFETY: attr is a valid, fully initialised perf_event_attr for the duration of the call.
    let fd = unsafe {
        perf_event_open_sys::perf_event_open(&mut attr, tid, -1, -1, PERF_FLAG_FD_CLOEXEC.into())
    };
    if fd >= 0 {
        // SAFETY: perf_event_open returned a new fd that nothing else owns.
        return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ENOENT | libc::EOPNOTSUPP | libc::ENODEV) => Err(floors::missing(
            feature,
            format!("perf_event_open(type {type_}, config {config}) gave {err}"),
        )),
        _ => Err(CaseError::Fail(anyhow::anyhow!(
            "perf_event_open(type {type_}, config {config}): {err}"
        ))),
    }
}

/// Stops and joins the burner thread, also when the case fails.
struct StopOnDrop(Arc<AtomicBool>, Option<std::thread::JoinHandle<()>>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        if let Some(thread) = self.1.take() {
            let _ = thread.join();
        }
    }
}
