//! BPF_MAP_TYPE_USER_RINGBUF (`programs/src/bpf/map_user_ringbuf.bpf.c`): user space produces
//! with libbpf's user ring buffer, the program (XDP, BPF_PROG_TEST_RUN) drains it with
//! bpf_user_ringbuf_drain.
//!
//! `drains_the_submitted_samples_in_order`: the test submits samples 0..=4, reserves one more and
//! discards it, then submits 5..=9. A first drain whose callback stops after 3 samples returns 3
//! and hands over 0, 1, 2; the next returns the remaining 7 (the discarded sample is skipped and
//! not counted) in order, each whole ({seq, !seq}); a third finds nothing (0).

use std::mem::MaybeUninit;

use libbpf_rs::libbpf_sys;
use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapType, ProgramInput, ProgramType, UserRingBuffer};
use programs::map_user_ringbuf::{MapUserRingbufSkel, MapUserRingbufSkelBuilder};
use testkit::{Case, CaseResult, probe, test_run};

/// A minimal Ethernet frame for the test runs.
const FRAME: [u8; 64] = [0; 64];

/// Runs `drain` once with `stop_after`; the helper's return.
fn drain(skel: &mut MapUserRingbufSkel, stop_after: u32) -> CaseResult<i64> {
    skel.maps.bss_data.as_deref_mut().expect(".bss").stop_after = stop_after;
    let input = ProgramInput {
        data_in: Some(&FRAME),
        ..Default::default()
    };
    let out = test_run::run("xdp", &skel.progs.drain, input)?;
    assert_eq!(out.return_value, libbpf_sys::XDP_PASS);
    Ok(skel.maps.bss_data.as_deref().expect(".bss").drained)
}

/// The sequence numbers the callback has seen so far.
fn seen(skel: &MapUserRingbufSkel) -> Vec<u64> {
    let bss = skel.maps.bss_data.as_deref().expect(".bss");
    bss.seen[..bss.nseen as usize].to_vec()
}

#[test]
fn drains_the_submitted_samples_in_order() {
    Case::run(ProgramType::Xdp, |case| {
        probe::map_type(MapType::UserRingBuf, "map_type.user_ringbuf")?;
        probe::helper(
            ProgramType::Xdp,
            libbpf_sys::BPF_FUNC_user_ringbuf_drain,
            "bpf_user_ringbuf_drain",
        )?;
        let mut object = MaybeUninit::uninit();
        let mut skel = case.load(MapUserRingbufSkelBuilder::default().open(&mut object)?)?;
        let producer = UserRingBuffer::new(&skel.maps.requests)?;
        let submit = |seq: u64, keep: bool| -> CaseResult {
            let mut sample = producer.reserve(16)?;
            let bytes: &mut [u8] = sample.as_mut();
            bytes[..8].copy_from_slice(&seq.to_ne_bytes());
            bytes[8..].copy_from_slice(&(!seq).to_ne_bytes());
            if keep {
                producer.submit(sample)?;
            }
            // Dropped unsubmitted: discarded.
            Ok(())
        };
        for seq in 0..5 {
            submit(seq, true)?;
        }
        submit(100, false)?;
        for seq in 5..10 {
            submit(seq, true)?;
        }

        let first = drain(&mut skel, 3)?;
        assert_eq!((first, seen(&skel)), (3, vec![0, 1, 2]), "stopped after 3");
        let second = drain(&mut skel, 0)?;
        let third = drain(&mut skel, 0)?;
        let bss = skel.maps.bss_data.as_deref().expect(".bss");
        case.detail("drained", [first, second, third]);
        assert_eq!(second, 7, "the rest, without the discarded sample");
        assert_eq!(
            seen(&skel),
            (0..10).collect::<Vec<u64>>(),
            "in order, each once"
        );
        assert_eq!(bss.torn, 0, "samples read whole");
        assert_eq!(third, 0, "nothing left");
        Ok(())
    });
}
