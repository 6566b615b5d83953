//! sk_skb_verdict (`programs/src/bpf/sk_skb_verdict.bpf.c`): an skb verdict attached to a sockmap
//! without a stream parser (BPF_SK_SKB_VERDICT, Linux 5.13+), which redirects every skb a socket
//! of the map receives to the socket at key 1.
//!
//! Topology, inside a fresh network namespace: two loopback TCP connections, `c1 → s1` and
//! `c2 → s2`; `s1` is at key 0 of the sockmap. `redirects_whole_skbs_egress`: `c2` is at key 1,
//! the verdict redirects out through it (flags 0), so `s2` receives the bytes.
//! `redirects_whole_skbs_ingress`: `s2` itself is at key 1 and the verdict queues the skbs on its
//! receive side (BPF_F_INGRESS). In both, the test writes chunks of many sizes into `c1` (waiting
//! for the verdicts on each before the next) and then a sentinel: `s2` must read exactly the
//! bytes written, in order, before the sentinel, and `s1`, whose path the sentinel went through
//! (its verdict included), holds nothing. The program's byte count equals the bytes written; its
//! verdict count is at least one per write (the stack may split a write into several skbs).
//!
//! No SK_PASS verdicts: on 5.10 an SK_PASS of a parser/verdict pair stalls the kernel (known bug in
//! kernels.toml); 5.10 has no BPF_SK_SKB_VERDICT anyway (its attach is refused: `unsupported`).

use std::io::Write;
use std::mem::MaybeUninit;
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{ErrorKind, MapCore, MapFlags, ProgramType, libbpf_sys};
use programs::sk_skb_verdict::SkSkbVerdictSkelBuilder;
use rstest::rstest;
use testkit::observe::{self, volatile};
use testkit::stream::{assert_bytes_eq, read_queued, read_to_sentinel, tcp_pair};
use testkit::{Case, CaseError, NetNs, OrError, floors, probe};

/// How long bytes that must arrive (and verdicts that must come) may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Written last, behind every other write.
const SENTINEL: &[u8] = b"sentinel behind every earlier write";
/// The sizes of the writes under test.
const SIZES: [usize; 7] = [1, 2, 100, 1448, 4096, 16384, 65535];

/// Where the verdict sends the skbs of the socket at key 1.
#[derive(Clone, Copy, Debug)]
enum Direction {
    /// Out through it (its peer receives them).
    Egress,
    /// Into its receive queue (BPF_F_INGRESS).
    Ingress,
}

/// `size` bytes of a pattern that differs per write.
fn chunk(size: usize, seed: usize) -> Vec<u8> {
    (0..size)
        .map(|i| (i.wrapping_mul(131) ^ (i >> 7) ^ seed.wrapping_mul(29)) as u8)
        .collect()
}

#[rstest]
#[case::egress(Direction::Egress)]
#[case::ingress(Direction::Ingress)]
fn redirects_whole_skbs(#[case] direction: Direction) {
    Case::run(ProgramType::SkSkb, |case| {
        probe::helper(
            ProgramType::SkSkb,
            libbpf_sys::BPF_FUNC_sk_redirect_map,
            "bpf_sk_redirect_map",
        )?;
        let ns = NetNs::new()?;
        let _inside = ns.enter()?;
        let mut object = MaybeUninit::uninit();
        let mut open = SkSkbVerdictSkelBuilder::default().open(&mut object)?;
        open.maps
            .rodata_data
            .as_deref_mut()
            .expect("the object has a .rodata section")
            .redirect_flags = match direction {
            Direction::Egress => 0,
            Direction::Ingress => u64::from(libbpf_sys::BPF_F_INGRESS),
        };
        let skel = case.load(open)?;
        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");

        if !floors::has("attach_type.sk_skb_verdict", true) {
            return Err(floors::missing(
                "attach_type.sk_skb_verdict",
                "not attached",
            ));
        }
        let map_fd = skel.maps.sock_map.as_fd().as_raw_fd();
        match skel.progs.skb_verdict.attach_sockmap(map_fd) {
            Ok(()) => {}
            // Kernels before 5.13 know no BPF_SK_SKB_VERDICT.
            Err(e) if matches!(e.kind(), ErrorKind::Unsupported | ErrorKind::InvalidInput) => {
                return Err(floors::missing(
                    "attach_type.sk_skb_verdict",
                    format!("attaching an skb verdict to a sockmap: {e:#}"),
                ));
            }
            Err(e) => {
                return Err(CaseError::Fail(anyhow::anyhow!(
                    "attaching an skb verdict to a sockmap: {e:#}"
                )));
            }
        }

        let listener = TcpListener::bind("127.0.0.1:0").or_error("binding a loopback listener")?;
        let (mut c1, mut s1) = tcp_pair(&listener).or_error("connecting c1")?;
        c1.set_nodelay(true).or_error("setting TCP_NODELAY")?;
        // Bytes the kernel never consumes fail the write instead of hanging the test.
        c1.set_write_timeout(Some(TIMEOUT))
            .or_error("setting a write timeout")?;
        let (c2, mut s2) = tcp_pair(&listener).or_error("connecting c2")?;
        let target = match direction {
            Direction::Egress => &c2,
            Direction::Ingress => &s2,
        };
        for (key, sock) in [(0u32, s1.as_raw_fd()), (1u32, target.as_raw_fd())] {
            skel.maps.sock_map.update(
                &key.to_ne_bytes(),
                &(sock as u32).to_ne_bytes(),
                MapFlags::ANY,
            )?;
        }

        let mut expected = Vec::new();
        for (seed, &size) in SIZES.iter().enumerate() {
            let bytes = chunk(size, seed);
            c1.write_all(&bytes)?;
            expected.extend_from_slice(&bytes);
            // The verdicts on this write before the next one is written.
            let total = expected.len() as u64;
            observe::poll(TIMEOUT, || {
                (volatile(&bss.redirected_bytes) >= total).then_some(())
            })
            .ok_or_else(|| {
                CaseError::Fail(anyhow::anyhow!(
                    "the verdicts counted {} of the {total} bytes written within {TIMEOUT:?}",
                    volatile(&bss.redirected_bytes)
                ))
            })?;
        }
        c1.write_all(SENTINEL)?;

        let at_s2 = read_to_sentinel(
            &mut s2,
            SENTINEL,
            &format!("the sentinel at s2 (redirected, {direction:?})"),
            TIMEOUT,
        )?;
        let at_s1 = read_queued(&mut s1)?;
        let (verdicts, bytes) = (volatile(&bss.verdicts), volatile(&bss.redirected_bytes));
        case.detail("write_sizes", SIZES);
        case.detail("bytes_at_s2", at_s2.len());
        case.detail("bytes_at_s1", at_s1.len());
        case.detail("verdicts", verdicts);
        case.detail("redirected_bytes", bytes);
        assert!(
            at_s1.is_empty(),
            "s1 received {} bytes (every skb was to be redirected)",
            at_s1.len()
        );
        assert_bytes_eq(&at_s2, &expected, "bytes s2 received before the sentinel");
        assert_eq!(
            bytes,
            (expected.len() + SENTINEL.len()) as u64,
            "bytes the verdicts saw (every write and the sentinel, each once)"
        );
        assert!(
            verdicts > SIZES.len() as u64,
            "verdicts: {verdicts}, at least one per write and one for the sentinel"
        );
        Ok(())
    });
}
