//! Hello World, as the seeds write it (`programs/src/bpf/hello_world.bpf.c`): a tracepoint on
//! `syscalls/sys_enter_execve` prints "Hello, BPF World!" with bpf_trace_printk. The test execs a
//! command and finds the line of the exec'ing process (its pid, and the name trace_pipe shows for
//! it) in trace_pipe.
//! bpf_trace_printk is GPL-only: the same program under a proprietary license must be refused.

use std::mem::MaybeUninit;
use std::os::unix::fs::symlink;
use std::time::Duration;

use libbpf_rs::ProgramType;
use libbpf_rs::skel::{Skel, SkelBuilder};
use programs::hello_world::HelloWorldSkelBuilder;
use programs::hello_world_proprietary::HelloWorldProprietarySkelBuilder;
use testkit::{Case, LogLevel, OrError, TracePipe, probe};

const GREETING: &str = "Hello, BPF World!";

#[test]
fn prints_on_execve() {
    Case::run(ProgramType::Tracepoint, |case| {
        probe::tracepoint("syscalls", "sys_enter_execve")?;
        let mut object = MaybeUninit::uninit();
        let mut skel = case.load(HelloWorldSkelBuilder::default().open(&mut object)?)?;
        // Lock and open the pipe before the program can print, so no other reader eats our line.
        let mut pipe = TracePipe::open()?;
        skel.attach()?;

        // Exec a link to /bin/true with a name of our own; the line must come from its pid.
        let comm = format!("hello{}", std::process::id());
        let dir = tempfile::tempdir().or_error("creating a temporary directory")?;
        symlink("/bin/true", dir.path().join(&comm)).or_error("linking /bin/true")?;
        let exec = duct::cmd!(dir.path().join(&comm)).start()?;
        let pid = exec.pids()[0];
        exec.wait()?;

        let marker = format!("-{pid} ");
        let line = pipe.wait_for(Duration::from_secs(5), |l| {
            l.contains(&marker) && l.contains(GREETING)
        })?;
        case.detail("trace_line", &line);
        assert!(
            line.is_some(),
            "no '{GREETING}' from pid {pid} ({comm}) in trace_pipe within 5 s"
        );
        Ok(())
    });
}

#[test]
fn non_gpl_license_is_refused() {
    Case::run(ProgramType::Tracepoint, |case| {
        let mut object = MaybeUninit::uninit();
        let open = HelloWorldProprietarySkelBuilder::default().open(&mut object)?;
        let (result, outcome) = case.try_load(open, LogLevel::Stats);
        assert!(
            result.is_err(),
            "a non-GPL program calling bpf_trace_printk was loaded"
        );
        assert_eq!(outcome.errno.as_deref(), Some("EINVAL"));
        let message = outcome.message.unwrap_or_default();
        assert!(
            message.contains("cannot call GPL-restricted function from non-GPL compatible program"),
            "unexpected verifier reason: {message}"
        );
        Ok(())
    });
}
