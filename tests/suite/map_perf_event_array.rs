//! BPF_MAP_TYPE_PERF_EVENT_ARRAY (`programs/src/bpf/map_perf_event_array.bpf.c`, driven by
//! BPF_PROG_TEST_RUN as XDP): one perf ring per CPU (libbpf's perf buffer opens a
//! PERF_COUNT_SW_BPF_OUTPUT event per CPU into the CPU's slot, one data page each).
//!
//! `samples_reach_their_cpus_ring_and_losses_are_exact`: the test thread moves to each CPU in
//! turn and runs the program 70 times there. A sample is a 64-byte record (8-byte header, 4-byte
//! size, 52 bytes of data) and the kernel lets the writer run at most `size - 1` bytes ahead of
//! the reader, so 63 fit in a page: the program sees exactly 7 writes refused per CPU
//! (`-ENOSPC`), and the reader gets, in each CPU's ring, exactly the 63 samples written there, in
//! order, each naming that CPU. The loss is reported once the ring has room again: one more
//! sample per CPU arrives behind a PERF_RECORD_LOST of exactly 7 in its CPU's ring.
//!
//! `a_program_writes_only_its_own_cpus_slot`: the slot a program names instead of
//! BPF_F_CURRENT_CPU: an empty one is `-ENOENT`, one past `max_entries` `-E2BIG`, and another
//! CPU's event `-EOPNOTSUPP` (where the machine has a second CPU).

use std::cell::RefCell;
use std::mem::MaybeUninit;

use libbpf_rs::libbpf_sys;
use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapType, PerfBufferBuilder, ProgramInput, ProgramType};
use programs::map_perf_event_array::{MapPerfEventArraySkel, MapPerfEventArraySkelBuilder};
use testkit::observe::OneCpu;
use testkit::{Case, CaseResult, probe, test_run};

/// A minimal Ethernet frame for the test runs.
const FRAME: [u8; 64] = [0; 64];
/// A perf ring's data size (one page) and one sample's record in it.
const RING: u32 = 4096;
const RECORD: u32 = 64;
/// The map's `max_entries`.
const SLOTS: u32 = 256;

/// Probes the map type and the helper.
fn probe_perf_event_array() -> CaseResult {
    probe::map_type(MapType::PerfEventArray, "map_type.perf_event_array")?;
    probe::helper(
        ProgramType::Xdp,
        libbpf_sys::BPF_FUNC_perf_event_output,
        "bpf_perf_event_output",
    )
}

/// Runs `emit` `times` times in one test run.
fn emit(skel: &MapPerfEventArraySkel, times: u32) -> CaseResult {
    let input = ProgramInput {
        data_in: Some(&FRAME),
        repeat: times,
        ..Default::default()
    };
    let out = test_run::run("xdp", &skel.progs.emit, input)?;
    assert_eq!(out.return_value, libbpf_sys::XDP_PASS);
    Ok(())
}

/// What a reader got, in the order of the rings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Got {
    /// A sample in `ring`'s buffer: its sequence number and the CPU the program ran on.
    Sample { ring: usize, seq: u32, cpu: u32 },
    /// A PERF_RECORD_LOST in `ring`'s buffer.
    Lost { ring: usize, count: u64 },
}

#[test]
fn samples_reach_their_cpus_ring_and_losses_are_exact() {
    Case::run(ProgramType::Xdp, |case| {
        probe_perf_event_array()?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(MapPerfEventArraySkelBuilder::default().open(&mut object)?)?;
        let got = RefCell::new(Vec::new());
        let reader = PerfBufferBuilder::new(&skel.maps.events)
            .pages(1)
            .sample_cb(|ring: i32, data: &[u8]| {
                let word = |i: usize| u32::from_ne_bytes(data[i..i + 4].try_into().expect("4"));
                got.borrow_mut().push(Got::Sample {
                    ring: ring as usize,
                    seq: word(0),
                    cpu: word(4),
                });
            })
            .lost_cb(|ring: i32, count: u64| {
                got.borrow_mut().push(Got::Lost {
                    ring: ring as usize,
                    count,
                })
            })
            .build()?;

        const TRIES: u32 = 70;
        let fit = (RING - 1) / RECORD;
        let cpus = OneCpu::allowed()?;
        for &cpu in &cpus {
            let _on = OneCpu::on(cpu)?;
            emit(&skel, TRIES)?;
        }
        let bss = skel.maps.bss_data.as_deref().expect(".bss");
        assert_eq!(
            (bss.refused, bss.last_error),
            ((TRIES - fit) * cpus.len() as u32, -i64::from(libc::ENOSPC)),
            "writes refused by the full rings"
        );
        reader.consume()?;
        let mut want = Vec::new();
        for (k, &cpu) in cpus.iter().enumerate() {
            let first = k as u32 * fit;
            want.extend((first..first + fit).map(|seq| Got::Sample {
                ring: cpu,
                seq,
                cpu: cpu as u32,
            }));
        }
        assert_eq!(
            *got.borrow(),
            want,
            "each CPU's samples in its ring, in order"
        );

        got.borrow_mut().clear();
        for &cpu in &cpus {
            let _on = OneCpu::on(cpu)?;
            emit(&skel, 1)?;
        }
        reader.consume()?;
        let after: Vec<Got> = cpus
            .iter()
            .enumerate()
            .flat_map(|(k, &cpu)| {
                [
                    Got::Lost {
                        ring: cpu,
                        count: u64::from(TRIES - fit),
                    },
                    Got::Sample {
                        ring: cpu,
                        seq: fit * cpus.len() as u32 + k as u32,
                        cpu: cpu as u32,
                    },
                ]
            })
            .collect();
        case.detail("cpus", &cpus);
        assert_eq!(*got.borrow(), after, "the loss, then the next sample");
        Ok(())
    });
}

#[test]
fn a_program_writes_only_its_own_cpus_slot() {
    Case::run(ProgramType::Xdp, |case| {
        probe_perf_event_array()?;
        let mut object = MaybeUninit::uninit();
        let mut skel = case.load(MapPerfEventArraySkelBuilder::default().open(&mut object)?)?;
        let _reader = PerfBufferBuilder::new(&skel.maps.events).pages(1).build()?;
        let cpus = OneCpu::allowed()?;
        let mut slots = vec![
            (SLOTS - 1, -libc::ENOENT, "an empty slot"),
            (SLOTS, -libc::E2BIG, "past max_entries"),
        ];
        if let [first, second, ..] = cpus[..] {
            let _on = OneCpu::on(first)?;
            slots.push((second as u32, -libc::EOPNOTSUPP, "another CPU's event"));
        }
        let _on = OneCpu::on(cpus[0])?;
        for (index, errno, what) in slots {
            let bss = skel.maps.bss_data.as_deref_mut().expect(".bss");
            bss.use_index = 1;
            bss.slot = index;
            emit(&skel, 1)?;
            let bss = skel.maps.bss_data.as_deref().expect(".bss");
            assert_eq!(bss.last_error, i64::from(errno), "slot {index}: {what}");
        }
        let bss = skel.maps.bss_data.as_deref_mut().expect(".bss");
        bss.slot = cpus[0] as u32;
        emit(&skel, 1)?;
        let bss = skel.maps.bss_data.as_deref().expect(".bss");
        case.detail("refused", bss.refused);
        assert_eq!(bss.next_seq, 1, "its own CPU's slot, named");
        Ok(())
    });
}
