//! BPF_MAP_TYPE_RINGBUF's own semantics (`programs/src/bpf/map_ringbuf.bpf.c`, driven by
//! BPF_PROG_TEST_RUN as XDP; helpers.rs has the plain submit/discard order).
//!
//! `a_full_ring_refuses_exactly`: a 4096-byte ring and 64-byte records (8-byte header + 56 bytes).
//! The producer may run at most `size - 1` bytes ahead of the consumer, so 63 records fit: 70
//! reservations in one test run (`repeat`) leave exactly 7 refused (the program's `lost`) and
//! bpf_ringbuf_query sees the producer at 63 × 64 with nothing consumed. Every third record was
//! discarded: it took its space, yet the consumer hands over exactly the 42 submitted ones, in
//! order, and a second read finds none. Once read, the space is free again (the next record
//! fits). A size that is not a power-of-2 multiple of the page is refused (`EINVAL`).
//!
//! `wakeups_follow_the_flags`: whether a commit wakes the ring's waiters, seen by edge-triggered
//! epoll: by default only when the consumer has caught up with the record (the first record of
//! an empty ring wakes, a second one behind it does not), always with `BPF_RB_FORCE_WAKEUP`,
//! never with `BPF_RB_NO_WAKEUP` (although the record is there). A wakeup that did not happen is
//! shown by a sentinel: after each commit a second program submits to another ring with
//! `BPF_RB_FORCE_WAKEUP`, from the same CPU; the kernel queues both wakeups on that CPU's
//! irq_work list in order, so the epoll wait that returns the sentinel's readiness also holds the
//! ring's when its wakeup was queued.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::time::Instant;

use libbpf_rs::libbpf_sys;
use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapHandle, MapType, ProgramInput, ProgramType, RingBufferBuilder};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use programs::map_ringbuf::{MapRingbufSkel, MapRingbufSkelBuilder};
use testkit::errno;
use testkit::observe::{self, OneCpu};
use testkit::{Case, CaseError, CaseResult, OrError, probe, test_run};

/// A minimal Ethernet frame for the test runs.
const FRAME: [u8; 64] = [0; 64];
/// The ring's size (`max_entries`) and one record's size in it (header + `struct record`).
const RING: u64 = 4096;
const RECORD: u64 = 64;

/// Probes the map type and the helpers the program calls.
fn probe_ringbuf() -> CaseResult {
    probe::map_type(MapType::RingBuf, "map_type.ringbuf")?;
    for (id, name) in [
        (libbpf_sys::BPF_FUNC_ringbuf_reserve, "bpf_ringbuf_reserve"),
        (libbpf_sys::BPF_FUNC_ringbuf_submit, "bpf_ringbuf_submit"),
        (libbpf_sys::BPF_FUNC_ringbuf_discard, "bpf_ringbuf_discard"),
        (libbpf_sys::BPF_FUNC_ringbuf_query, "bpf_ringbuf_query"),
    ] {
        probe::helper(ProgramType::Xdp, id, name)?;
    }
    Ok(())
}

/// Runs `produce` `times` times in one test run.
fn produce(skel: &MapRingbufSkel, times: u32) -> CaseResult {
    let input = ProgramInput {
        data_in: Some(&FRAME),
        repeat: times,
        ..Default::default()
    };
    let out = test_run::run("xdp", &skel.progs.produce, input)?;
    assert_eq!(out.return_value, libbpf_sys::XDP_PASS);
    Ok(())
}

/// bpf_ringbuf_query's (available data, ring size, consumer, producer) after the last run.
fn query(skel: &MapRingbufSkel) -> [u64; 4] {
    let bss = skel.maps.bss_data.as_deref().expect(".bss");
    [bss.avail_data, bss.ring_size, bss.cons_pos, bss.prod_pos]
}

#[test]
fn a_full_ring_refuses_exactly() {
    Case::run(ProgramType::Xdp, |case| {
        probe_ringbuf()?;
        let mut object = MaybeUninit::uninit();
        let mut skel = case.load(MapRingbufSkelBuilder::default().open(&mut object)?)?;
        skel.maps.bss_data.as_deref_mut().expect(".bss").discard_mod = 3;

        const TRIES: u64 = 70;
        produce(&skel, TRIES as u32)?;
        let fit = (RING - 1) / RECORD;
        let bss = skel.maps.bss_data.as_deref().expect(".bss");
        case.detail("lost", bss.lost);
        assert_eq!(bss.next_seq, TRIES, "one sequence number per run");
        assert_eq!(
            bss.lost,
            TRIES - fit,
            "reservations refused by the full ring"
        );
        assert_eq!(
            query(&skel),
            [fit * RECORD, RING, 0, fit * RECORD],
            "avail_data, ring_size, cons_pos, prod_pos: the discarded records hold their space"
        );

        let seqs = RefCell::new(Vec::new());
        let mut builder = RingBufferBuilder::new();
        builder.add(&skel.maps.ring, |r: &[u8]| {
            seqs.borrow_mut()
                .push(u64::from_ne_bytes(r[..8].try_into().expect("8 bytes")));
            0
        })?;
        let consumer = builder.build()?;
        let read = consumer.consume_raw();
        let want: Vec<u64> = (0..fit).filter(|s| s % 3 != 1).collect();
        case.detail("read", &*seqs.borrow());
        assert_eq!(
            *seqs.borrow(),
            want,
            "the submitted records, each once, in order"
        );
        assert_eq!(read, want.len() as i32, "records consumed");
        assert_eq!(consumer.consume_raw(), 0, "a second read finds nothing");

        let bss = skel.maps.bss_data.as_deref_mut().expect(".bss");
        bss.query_only = 1;
        produce(&skel, 1)?;
        assert_eq!(
            query(&skel),
            [0, RING, fit * RECORD, fit * RECORD],
            "all consumed"
        );
        let bss = skel.maps.bss_data.as_deref_mut().expect(".bss");
        bss.query_only = 0;
        bss.discard_mod = 0;
        produce(&skel, 1)?;
        assert_eq!(
            skel.maps.bss_data.as_deref().expect(".bss").lost,
            TRIES - fit,
            "the consumed space takes the next record"
        );
        seqs.borrow_mut().clear();
        consumer.consume_raw();
        assert_eq!(*seqs.borrow(), [TRIES]);

        for entries in [4096 + 1, 3 * 4096] {
            let e = MapHandle::create(
                MapType::RingBuf,
                None::<&str>,
                0,
                0,
                entries,
                &Default::default(),
            )
            .expect_err("an odd ring size");
            assert_eq!(errno::of_libbpf(&e), Some(libc::EINVAL), "{entries}: {e:#}");
        }
        Ok(())
    });
}

/// The epoll tokens of the two rings.
const RING_TOKEN: u64 = 1;
const SENTINEL_TOKEN: u64 = 2;

/// Waits on `epoll` until the sentinel ring is ready; whether `ring` was ready in any wait.
fn ready_before_sentinel(epoll: &Epoll) -> CaseResult<bool> {
    let deadline = Instant::now() + observe::MUST_ARRIVE;
    let mut ring_ready = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(CaseError::Fail(anyhow::anyhow!(
                "the sentinel ring's wakeup did not arrive within {:?}",
                observe::MUST_ARRIVE
            )));
        }
        let mut events = [EpollEvent::empty(); 2];
        let timeout = EpollTimeout::try_from(left).unwrap_or(EpollTimeout::MAX);
        let n = match epoll.wait(&mut events, timeout) {
            Err(Errno::EINTR) => continue,
            other => other.or_error("epoll_wait")?,
        };
        let tokens: Vec<u64> = events[..n].iter().map(EpollEvent::data).collect();
        ring_ready |= tokens.contains(&RING_TOKEN);
        if tokens.contains(&SENTINEL_TOKEN) {
            return Ok(ring_ready);
        }
    }
}

#[test]
fn wakeups_follow_the_flags() {
    Case::run(ProgramType::Xdp, |case| {
        probe_ringbuf()?;
        let mut object = MaybeUninit::uninit();
        let mut skel = case.load(MapRingbufSkelBuilder::default().open(&mut object)?)?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).or_error("epoll_create")?;
        let edge = EpollFlags::EPOLLIN | EpollFlags::EPOLLET;
        epoll
            .add(skel.maps.ring.as_fd(), EpollEvent::new(edge, RING_TOKEN))
            .or_error("epoll_ctl ADD ring")?;
        epoll
            .add(
                skel.maps.sentinel_ring.as_fd(),
                EpollEvent::new(edge, SENTINEL_TOKEN),
            )
            .or_error("epoll_ctl ADD sentinel_ring")?;
        let mut builder = RingBufferBuilder::new();
        builder.add(&skel.maps.ring, |_: &[u8]| 0)?;
        let consumer = builder.build()?;
        // Both rings' wakeups are queued on this CPU's irq_work list.
        let _one_cpu = OneCpu::pin()?;

        // Commits one record with `flags`; whether the ring became ready.
        let commit = |skel: &mut MapRingbufSkel, flags: u32| -> CaseResult<bool> {
            skel.maps.bss_data.as_deref_mut().expect(".bss").wake_flags = flags.into();
            produce(skel, 1)?;
            let input = ProgramInput {
                data_in: Some(&FRAME),
                ..Default::default()
            };
            let out = test_run::run("xdp", &skel.progs.wake_sentinel, input)?;
            assert_eq!(out.return_value, libbpf_sys::XDP_PASS, "sentinel reserved");
            ready_before_sentinel(&epoll)
        };
        let mut woke = Vec::new();
        // The consumer has caught up: the record wakes.
        woke.push(commit(&mut skel, 0)?);
        // One unread record ahead of it: no wakeup.
        woke.push(commit(&mut skel, 0)?);
        // Forced, with two unread ahead.
        woke.push(commit(&mut skel, libbpf_sys::BPF_RB_FORCE_WAKEUP)?);
        assert_eq!(consumer.consume_raw(), 3, "records read");
        // Caught up, but told not to wake: the record is there all the same.
        woke.push(commit(&mut skel, libbpf_sys::BPF_RB_NO_WAKEUP)?);
        assert_eq!(
            query(&skel)[0],
            RECORD,
            "avail_data after the unannounced record"
        );
        assert_eq!(consumer.consume_raw(), 1, "the unannounced record is read");
        // Caught up again: the default wakes again.
        woke.push(commit(&mut skel, 0)?);
        case.detail("woke", &woke);
        assert_eq!(
            woke,
            [true, false, true, false, true],
            "default (caught up), default (behind), FORCE_WAKEUP, NO_WAKEUP, default (caught up)"
        );
        Ok(())
    });
}
