//! BTF (`programs/src/bpf/btf.bpf.c`): a socket filter counting packets into a map whose value is a
//! struct (`flow_stats`) described by BTF.
//!
//! - Built with BTF (libbpf-cargo compiles with `-g`), the program loads with func and line info:
//!   the kernel's program info counts the records, and the verifier log (level 2) carries the C
//!   source lines (`; s->packets += 1;`).
//! - The same program without BTF — the loaded object's own instructions, map fds and all, loaded
//!   again through the raw path without BTF, func or line info — still loads, has no BTF in its
//!   program info nor source lines in its log, and still counts.
//! - The map's value type round-trips: the kernel holds the struct's BTF with its member names,
//!   user space writes a `flow_stats` (the skeleton's type, generated from the same BTF), two test
//!   runs update it, and user space reads back what the program computed.

use std::mem::MaybeUninit;
use std::os::fd::AsFd;

use libbpf_rs::btf::Btf;
use libbpf_rs::btf::types::Struct;
use libbpf_rs::query::{ProgInfoIter, ProgInfoQueryOptions};
use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapCore, MapFlags, MapInfo, Program, ProgramInput, ProgramType};
use programs::btf::BtfSkelBuilder;
use programs::btf::types::flow_stats;
use testkit::raw_load::{self, RawProgram};
use testkit::{Case, CaseError, LogLevel};

/// A 64-byte frame; a socket filter sees it without its 14-byte Ethernet header.
const PACKET: [u8; 64] = [0; 64];
const SKB_LEN: u32 = 64 - 14;

fn source_lines(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.starts_with("; ")).collect()
}

fn stats_bytes(stats: &flow_stats) -> Vec<u8> {
    // SAFETY: flow_stats is a repr(C) struct of integers without padding.
    unsafe {
        std::slice::from_raw_parts(
            (stats as *const flow_stats).cast::<u8>(),
            size_of::<flow_stats>(),
        )
    }
    .to_vec()
}

fn read_stats(map: &dyn MapCore) -> libbpf_rs::Result<flow_stats> {
    let bytes = map
        .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)?
        .expect("an array always holds key 0");
    assert_eq!(bytes.len(), size_of::<flow_stats>());
    // SAFETY: the map's value is a flow_stats (its BTF says so; the size matches).
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<flow_stats>()) })
}

#[test]
fn loads_with_func_and_line_info() {
    Case::run(ProgramType::SocketFilter, |case| {
        let mut object = MaybeUninit::uninit();
        let open = BtfSkelBuilder::default().open(&mut object)?;
        let (skel, outcome) = case.try_load(open, LogLevel::Full);
        let skel = skel?;
        let id = Program::id_from_fd(skel.progs.count_packets.as_fd())?;
        let info = ProgInfoIter::with_query_opts(
            ProgInfoQueryOptions::default()
                .include_func_info(true)
                .include_line_info(true),
        )
        .find(|p| p.id == id)
        .ok_or_else(|| {
            CaseError::Error(anyhow::anyhow!(
                "program id {id} is not among the kernel's programs (bpf_prog_get_next_id)"
            ))
        })?;
        case.detail("btf_id_set", info.btf_id != 0);
        case.detail("func_info", info.func_info.len());
        case.detail("line_info", info.line_info.len());
        assert_ne!(info.btf_id, 0, "the program has no BTF");
        assert_eq!(
            info.func_info.len(),
            1,
            "one function, one func_info record"
        );
        assert!(
            info.line_info.len() >= 5,
            "{} line_info records",
            info.line_info.len()
        );

        let lines = source_lines(outcome.log("count_packets"));
        case.detail("source_lines_in_log", lines.len());
        assert!(
            lines.iter().any(|l| l.contains("s->packets += 1;")),
            "the level-2 log shows no source line of count_packets:\n{}",
            outcome.log("count_packets")
        );
        Ok(())
    });
}

#[test]
fn loads_without_btf() {
    Case::run(ProgramType::SocketFilter, |case| {
        let mut object = MaybeUninit::uninit();
        let skel = case.load(BtfSkelBuilder::default().open(&mut object)?)?;
        // libbpf keeps the final instructions, the map's fd embedded in its ld_imm64.
        let insns = skel.progs.count_packets.insns().to_vec();
        let raw = RawProgram::new("count_packets_nobtf", ProgramType::SocketFilter, insns)
            .log_level(LogLevel::Full)
            .log_in_snapshot(false);
        let load = case.load_raw(&raw);
        let info = raw_load::prog_info(load.fd()?)?;
        case.detail("btf_id_set", info.btf_id != 0);
        case.detail("func_info", info.nr_func_info);
        case.detail("line_info", info.nr_line_info);
        assert_eq!(info.btf_id, 0);
        assert_eq!((info.nr_func_info, info.nr_line_info), (0, 0));
        assert!(
            source_lines(load.log()).is_empty(),
            "source lines without BTF:\n{}",
            load.log()
        );

        let returned = raw_load::test_run(load.fd()?, &PACKET)?;
        let stats = read_stats(&skel.maps.stats)?;
        case.detail("packets_counted", stats.packets);
        assert_eq!(returned, SKB_LEN);
        assert_eq!(stats.packets, 1, "the BTF-less copy did not count");
        Ok(())
    });
}

#[test]
fn map_value_round_trips() {
    Case::run(ProgramType::SocketFilter, |case| {
        let mut object = MaybeUninit::uninit();
        let skel = case.load(BtfSkelBuilder::default().open(&mut object)?)?;
        let map = &skel.maps.stats;
        let prog = &skel.progs.count_packets;

        // The kernel holds the value's type: a struct named flow_stats with our members.
        let map_info = MapInfo::new(map.as_fd())?.info;
        let prog_id = Program::id_from_fd(prog.as_fd())?;
        let btf = Btf::from_prog_id(prog_id)?;
        let value: Struct<'_> = btf
            .type_by_id(map_info.btf_value_type_id.into())
            .expect("the map's value type is a struct in the object's BTF");
        let members: Vec<String> = value
            .iter()
            .map(|m| {
                m.name
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .collect();
        case.detail("value_type", value.name().map(|n| n.to_string_lossy()));
        case.detail("value_members", &members);
        assert_eq!(value.name().and_then(|n| n.to_str()), Some("flow_stats"));
        assert_eq!(
            members,
            ["packets", "bytes", "last_len", "marker", "echo", "reserved"]
        );

        let written = flow_stats {
            packets: 100,
            bytes: 1000,
            marker: 0x00c0_ffee,
            ..Default::default()
        };
        map.update(&0u32.to_ne_bytes(), &stats_bytes(&written), MapFlags::ANY)?;
        for _ in 0..2 {
            let output = testkit::test_run::run(
                "socket_filter",
                prog,
                ProgramInput {
                    data_in: Some(&PACKET),
                    ..Default::default()
                },
            )?;
            assert_eq!(output.return_value, SKB_LEN);
        }
        let read = read_stats(map)?;
        case.detail("read_back", format!("{read:?}"));
        assert_eq!(read.packets, 102);
        assert_eq!(read.bytes, 1000 + 2 * u64::from(SKB_LEN));
        assert_eq!(read.last_len, SKB_LEN);
        assert_eq!(read.marker, 0x00c0_ffee, "the program changed the marker");
        assert_eq!(
            read.echo, !0x00c0_ffee,
            "the program did not read the marker"
        );
        assert_eq!(read.reserved, 0);
        Ok(())
    });
}
