//! The skeleton workflow of the seeds (`programs/src/bpf/skeleton.bpf.c`, their `minimal.bpf.c`):
//! open the skeleton, write the pid to filter on into the `.bss` variable `mpid` before load, load,
//! attach, and read what the program reported back through the skeleton's mmap of `.bss`. Writing a
//! different pid (before load, or while attached) changes what it reports.

use std::fs::OpenOptions;
use std::io::Write;
use std::mem::MaybeUninit;

use std::os::fd::AsFd;

use libbpf_rs::ProgramType;
use libbpf_rs::skel::Skel;
use programs::skeleton::SkeletonSkelBuilder;
use testkit::observe::Trigger;
use testkit::{Case, OrError, runs};

const WRITES: u64 = 100;

/// Makes `WRITES` write(2) calls from this process.
fn write_to_dev_null() -> std::io::Result<()> {
    let mut null = OpenOptions::new().write(true).open("/dev/null")?;
    (0..WRITES).try_for_each(|_| null.write_all(b"x"))
}

#[test]
fn bss_pid_selects_what_is_reported() {
    Case::run(ProgramType::Tracepoint, |case| {
        // A process that makes no write(2) calls while it lives.
        let idle = Trigger::start(duct::cmd!("sleep", "30"))?;
        let idle_pid = idle.pids()[0] as i32;

        let mut object = MaybeUninit::uninit();
        let mut skel = case.open_load(SkeletonSkelBuilder::default(), &mut object, |open| {
            open.maps.bss_data.as_deref_mut().expect(".bss").mpid = idle_pid;
        })?;
        skel.attach()?;

        write_to_dev_null().or_error("writing to /dev/null")?;
        let bss = skel.maps.bss_data.as_deref_mut().expect(".bss is mmapped");
        let for_idle = bss.writes;
        // Now point it at this process, through the mmapped .bss of the running program.
        bss.mpid = std::process::id() as i32;
        let misses_before = runs::misses(skel.progs.handle_tp.as_fd())?;
        write_to_dev_null().or_error("writing to /dev/null")?;
        let skipped = runs::misses(skel.progs.handle_tp.as_fd())? - misses_before;
        let for_us = skel
            .maps
            .bss_data
            .as_deref()
            .expect(".bss is mmapped")
            .writes;

        case.detail("writes_counted_for_idle_pid", for_idle);
        case.detail("writes_counted_for_own_pid", for_us);
        case.detail("runs_skipped_by_the_kernel", skipped);
        assert_eq!(
            for_idle, 0,
            "writes of this process counted while mpid named another"
        );
        // Other threads of this process (parallel tests) may write too: at least ours, less
        // the runs the kernel skipped meanwhile (recursion_misses: 7.x runs syscall
        // tracepoints preemptibly, and a parallel test's write preempted inside the program
        // makes ours a miss).
        assert!(
            for_us + skipped >= WRITES,
            "{for_us} writes counted for this process ({skipped} runs skipped by the kernel), \
                 expected at least {WRITES}"
        );
        Ok(())
    });
}
