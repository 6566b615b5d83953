//! `BPF_MAP_TYPE_LPM_TRIE` (`programs/src/bpf/map_lpm_trie.bpf.c`): an XDP filter that looks each
//! packet's source address up in a trie of prefix rules (IPv4 and IPv6) and drops or passes it by
//! the rule of the longest matching prefix; the test runs crafted frames through it
//! (`BPF_PROG_TEST_RUN`) and sees the verdict and the rule it matched.
//!
//! - `longest_prefix_match`: nested and sibling prefixes, for both families: each address matches
//!   its longest prefix, the program and a user-space lookup (a full-length key) agree, an address
//!   under no prefix matches nothing until the prefix of length 0 is added, which then catches it;
//!   deleting a prefix makes its addresses fall back to the next shorter one, and deleting one
//!   that is not there (or a present address with another length) is `ENOENT`;
//! - `next_key_order`: `BPF_MAP_GET_NEXT_KEY` walks the prefixes in the trie's postorder — a more
//!   specific prefix before the one it is under, the 0 branch before the 1 branch — starting at the
//!   first one after a key that is not in the trie.

use std::cmp::Ordering;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, Ipv6Addr};

use libbpf_rs::libbpf_sys::{XDP_DROP, XDP_PASS};
use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapCore, MapFlags, MapMut, MapType, ProgramInput, ProgramMut, ProgramType};
use programs::map_lpm_trie::{MapLpmTrieSkel, MapLpmTrieSkelBuilder};
use testkit::map_ops::{OK, found, outcome};
use testkit::packet::{self, ETH_P_IP, ETH_P_IPV6, IPPROTO_UDP, Ipv4};
use testkit::{Case, CaseResult, floors, probe, test_run};

/// `matched` when no prefix matched, as in map_lpm_trie.bpf.c.
const NO_MATCH: u32 = 0xffff_ffff;

/// A prefix rule: address bytes, prefix length, rule id, and whether it drops.
struct Rule {
    addr: Vec<u8>,
    len: u32,
    id: u32,
    drop: bool,
}

/// The trie key: prefix length, then the address bytes.
fn key(addr: &[u8], len: u32) -> Vec<u8> {
    let mut k = len.to_ne_bytes().to_vec();
    k.extend_from_slice(addr);
    k
}

fn add(map: &MapMut<'_>, rule: &Rule) -> CaseResult {
    let mut value = rule.id.to_ne_bytes().to_vec();
    value.extend_from_slice(&u32::from(rule.drop).to_ne_bytes());
    map.update(&key(&rule.addr, rule.len), &value, MapFlags::ANY)?;
    Ok(())
}

/// A UDP frame from `src` (4 or 16 bytes).
fn frame_from(src: &[u8]) -> Vec<u8> {
    let udp = packet::udp(4000, 5000, b"lpm");
    match src.len() {
        4 => {
            let ip = Ipv4::new(
                src.try_into().expect("4 bytes"),
                [192, 0, 2, 99],
                IPPROTO_UDP,
            );
            packet::ethernet(ETH_P_IP, &ip.build(&udp))
        }
        _ => {
            let dst = Ipv6Addr::LOCALHOST.octets();
            let ip = packet::ipv6(src.try_into().expect("16 bytes"), dst, IPPROTO_UDP, 0, &udp);
            packet::ethernet(ETH_P_IPV6, &ip)
        }
    }
}

/// Runs the filter on a frame from `src`: (verdict, the rule it matched).
fn filter(skel: &MapLpmTrieSkel<'_>, prog: &ProgramMut<'_>, src: &[u8]) -> CaseResult<(u32, u32)> {
    let frame = frame_from(src);
    let input = ProgramInput {
        data_in: Some(&frame),
        ..Default::default()
    };
    let verdict = test_run::run("xdp", prog, input)?.return_value;
    Ok((
        verdict,
        skel.maps.bss_data.as_deref().expect(".bss").matched,
    ))
}

/// The rule a user-space lookup of `src` with a full-length key finds (`NO_MATCH`: none).
fn user_match(map: &MapMut<'_>, src: &[u8]) -> CaseResult<u32> {
    let value = map.lookup(&key(src, 8 * src.len() as u32), MapFlags::ANY)?;
    Ok(value.map_or(NO_MATCH, |v| {
        u32::from_ne_bytes(v[..4].try_into().expect("4 bytes"))
    }))
}

fn v4(a: [u8; 4]) -> Vec<u8> {
    a.to_vec()
}

fn v6(a: &str) -> Vec<u8> {
    a.parse::<Ipv6Addr>()
        .expect("an IPv6 address")
        .octets()
        .to_vec()
}

#[test]
fn longest_prefix_match() {
    Case::run(ProgramType::Xdp, |case| {
        probe::map_type(MapType::LpmTrie, "map_type.lpm_trie")?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(MapLpmTrieSkelBuilder::default().open(&mut object)?)?;
        let prog = &skel.progs.filter;
        let (rules4, rules6) = (&skel.maps.rules4, &skel.maps.rules6);
        let r = |addr: Vec<u8>, len, id, drop| Rule {
            addr,
            len,
            id,
            drop,
        };
        for rule in [
            r(v4([10, 0, 0, 0]), 8, 1, false),
            r(v4([10, 1, 0, 0]), 16, 2, true),
            r(v4([10, 1, 2, 0]), 24, 3, false),
            r(v4([10, 1, 2, 128]), 25, 4, true),
            r(v4([10, 2, 0, 0]), 16, 5, false),
        ] {
            add(rules4, &rule)?;
        }
        for rule in [
            r(v6("2001:db8::"), 32, 11, false),
            r(v6("2001:db8:1::"), 48, 12, true),
            r(v6("2001:db8:1:2::"), 64, 13, false),
        ] {
            add(rules6, &rule)?;
        }
        let (pass, drop) = (XDP_PASS, XDP_DROP);
        // (source, the rule's verdict and id) before the default route and deletes.
        let outside4 = v4([192, 0, 2, 1]);
        let outside6 = v6("fd00::1");
        let table: Vec<(Vec<u8>, (u32, u32))> = vec![
            (v4([10, 1, 2, 200]), (drop, 4)),
            (v4([10, 1, 2, 3]), (pass, 3)),
            (v4([10, 1, 9, 9]), (drop, 2)),
            (v4([10, 2, 3, 4]), (pass, 5)),
            (v4([10, 9, 9, 9]), (pass, 1)),
            (outside4.clone(), (pass, NO_MATCH)),
            (v6("2001:db8:1:2::5"), (pass, 13)),
            (v6("2001:db8:1:3::5"), (drop, 12)),
            (v6("2001:db8:ffff::1"), (pass, 11)),
            (outside6.clone(), (pass, NO_MATCH)),
        ];
        let check = |table: &[(Vec<u8>, (u32, u32))], when: &str| -> CaseResult {
            for (src, want) in table {
                let map = if src.len() == 4 { rules4 } else { rules6 };
                let got = filter(&skel, prog, src)?;
                let shown = show(src);
                assert_eq!(
                    got, *want,
                    "{when}: (verdict, rule) of a packet from {shown}"
                );
                assert_eq!(
                    user_match(map, src)?,
                    want.1,
                    "{when}: user lookup of {shown}"
                );
            }
            Ok(())
        };
        check(&table, "nested prefixes")?;

        // Prefix 0 catches every address no longer prefix matches.
        add(rules4, &r(v4([0, 0, 0, 0]), 0, 9, true))?;
        add(rules6, &r(v6("::"), 0, 19, true))?;
        let defaults = [
            (outside4.clone(), (drop, 9)),
            (outside6.clone(), (drop, 19)),
        ];
        check(&defaults, "with prefix 0")?;
        check(&table[..5], "with prefix 0, under longer prefixes")?;

        // Deleting a prefix: its addresses fall back to the next shorter one.
        let deletes = [
            outcome(&rules4.delete(&key(&[10, 1, 2, 0], 24))),
            outcome(&rules6.delete(&key(&v6("2001:db8:1::"), 48))),
            outcome(&rules4.delete(&key(&[10, 1, 3, 0], 24))),
            outcome(&rules4.delete(&key(&[10, 1, 0, 0], 17))),
            found(&rules4.lookup(&key(&[10, 1, 2, 0], 24), MapFlags::ANY)),
        ];
        assert_eq!(
            deletes,
            [OK, OK, "ENOENT", "ENOENT", OK],
            "delete 10.1.2.0/24 and 2001:db8:1::/48, absent 10.1.3.0/24, 10.1.0.0 with length \
             17; then look 10.1.2.0/24 up (it matches 10.1.0.0/16 now)"
        );
        let after = [
            (v4([10, 1, 2, 3]), (drop, 2)),
            (v4([10, 1, 2, 200]), (drop, 4)),
            (v6("2001:db8:1:2::5"), (pass, 13)),
            (v6("2001:db8:1:3::5"), (pass, 11)),
        ];
        check(&after, "after the deletes")?;
        Ok(())
    });
}

/// An address for messages.
fn show(a: &[u8]) -> String {
    match a.len() {
        4 => Ipv4Addr::from(<[u8; 4]>::try_from(a).expect("4 bytes")).to_string(),
        _ => Ipv6Addr::from(<[u8; 16]>::try_from(a).expect("16 bytes")).to_string(),
    }
}

/// The trie's postorder on (address, length): at the first bit where two prefixes differ, the one
/// with 0 comes first; when one is a prefix of the other, the longer (more specific) comes first.
fn postorder(a: &(Vec<u8>, u32), b: &(Vec<u8>, u32)) -> Ordering {
    let bit = |addr: &[u8], i: u32| (addr[i as usize / 8] >> (7 - i % 8)) & 1;
    for i in 0..a.1.min(b.1) {
        match bit(&a.0, i).cmp(&bit(&b.0, i)) {
            Ordering::Equal => {}
            other => return other,
        }
    }
    b.1.cmp(&a.1)
}

#[test]
fn next_key_order() {
    Case::run(ProgramType::Xdp, |case| {
        probe::map_type(MapType::LpmTrie, "map_type.lpm_trie")?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(MapLpmTrieSkelBuilder::default().open(&mut object)?)?;
        let map = &skel.maps.rules4;
        let prefixes: Vec<(Vec<u8>, u32)> = vec![
            (v4([10, 0, 0, 0]), 8),
            (v4([0, 0, 0, 0]), 0),
            (v4([10, 2, 0, 0]), 16),
            (v4([10, 1, 2, 128]), 25),
            (v4([10, 1, 0, 0]), 16),
            (v4([192, 168, 0, 0]), 16),
            (v4([10, 1, 2, 0]), 24),
            (v4([10, 1, 2, 0]), 25),
        ];
        for (id, (addr, len)) in prefixes.iter().enumerate() {
            let (addr, len, id) = (addr.clone(), *len, id as u32);
            add(
                map,
                &Rule {
                    addr,
                    len,
                    id,
                    drop: false,
                },
            )?;
        }
        let first = testkit::map_ops::next_key(map, None);
        if let Err(e) = &first
            && ["EINVAL", "ENOTSUPP", "EOPNOTSUPP"].contains(&e.as_str())
        {
            return Err(floors::missing(
                "map_op.lpm_get_next_key",
                format!("BPF_MAP_GET_NEXT_KEY of an LPM trie answered {e}"),
            ));
        }
        let mut want = prefixes.clone();
        want.sort_by(postorder);
        let walked: Vec<(Vec<u8>, u32)> = testkit::map_ops::walk(map)
            .into_iter()
            .map(|k| {
                (
                    k[4..].to_vec(),
                    u32::from_ne_bytes(k[..4].try_into().expect("4 bytes")),
                )
            })
            .collect();
        let shown = |l: &[(Vec<u8>, u32)]| -> Vec<String> {
            l.iter().map(|(a, n)| format!("{}/{n}", show(a))).collect()
        };
        case.detail("walk", shown(&walked));
        assert_eq!(shown(&walked), shown(&want), "the next-key walk");
        // 10.1.2.130/31 is in no node of the trie: the walk starts over at its first prefix.
        let absent = testkit::map_ops::next_key(map, Some(&key(&[10, 1, 2, 130], 31)));
        assert_eq!(
            absent,
            Ok(key(&want[0].0, want[0].1)),
            "next key after an absent key"
        );
        Ok(())
    });
}
