//! lwt_seg6local (`programs/src/bpf/lwt_seg6local.bpf.c`): the program of an SRv6 `End.BPF`
//! endpoint, attached with iproute2:
//! `ip -6 route add fc00::e/128 encap seg6local action End.BPF endpoint pinned <file> dev ra0`.
//!
//! `end_bpf_drops_and_retags`: three namespaces in a row ([`Line::ipv6`]), sender `a` (fd00:1::1)
//! — endpoint `r` (fd00:1::2 | fd00:2::1, IPv6 forwarding on, holds the End.BPF route for the SID
//! [`SID`] fc00::e) — destination `b` (fd00:2::2, [`FINAL_DST`] fc00::d on its loopback, SRv6
//! processing turned on with `net.ipv6.conf.{all,br0}.seg6_enabled=1` so it accepts the Segment
//! Routing Header (SRH) of the packets that reach it); `a` and `r` route fc00::/16 towards `b`.
//! The skeleton loads the program (verifier statistics recorded) and pins it in a bpffs directory
//! of the case's own; `ip -6 route add` runs from a thread inside `r` (so it sees this process's
//! bpffs mount); the pin goes right after.
//!
//! The sender's UDP socket carries an SRH (`setsockopt(IPV6_RTHDR)`, type 4) with the segment
//! list [fc00::d, fc00::e] and segments_left 1: the kernel sends the datagram to fc00::e, where
//! End.BPF does the End behaviour (segments_left 0, destination fc00::d) and runs the program.
//! The program drops datagrams whose SRH tag is [`DROP_TAG`] and rewrites the tag of all others to
//! [`NEW_TAG`] with `bpf_lwt_seg6_store_bytes`, then lets the kernel route them on. The receiver
//! in `b` asks for the routing header of each datagram (`IPV6_RECVRTHDR`) and proves:
//! - datagrams tagged `DROP_TAG` never arrive (a PASS_TAG sentinel sent behind them on their socket,
//!   from one CPU, arrived);
//! - datagrams tagged [`PASS_TAG`] all arrive, their SRH now tagged `NEW_TAG`, segments_left 0;
//! - datagrams sent straight to fc00::d without an SRH arrive, with no routing header, and the
//!   program never ran for them;
//! - the program's counters: it ran once per SRv6 datagram, dropped exactly the `DROP_TAG` ones,
//!   retagged the others, and saw segments_left already 0 (End had run before it).
//!
//! `test_run_*` (rstest table): BPF_PROG_TEST_RUN on crafted IPv6 frames, where the kernel offers
//! it. It runs the program without any End behaviour (segments_left stays as crafted) and without
//! End.BPF's SRH state, so the retagging path (its helper needs that state) is left to the route
//! case; the rows check the drop verdicts for a `DROP_TAG` SRH and for packets without a (complete)
//! SRH. The program reads the packet with bpf_skb_load_bytes: the test run never set up direct
//! packet access for this type. Newer kernels have no test run for lwt_seg6local at all: upstream
//! dropped it in 6.11 (c13fda93aca1, CVE-2024-46754) because the bpf_lwt_seg6_* helpers need
//! End.BPF's SRH state, and stable took that to 5.10.269, 5.15.220, 6.1.187, 6.6.156 and 6.10.10
//! (kernels/floors.toml, `test_run.lwt_seg6local`). There (6.12, 6.18: ENOTSUPP) the rows are
//! `unsupported` and only the route case proves the behaviour; on older kernels (Debian's 5.10.223
//! and 6.1.176) an ENOTSUPP is a `fail`.

use std::mem::MaybeUninit;
use std::net::{Ipv6Addr, SocketAddrV6, UdpSocket};
use std::time::Duration;

use libbpf_rs::ProgramType;
use programs::lwt_seg6local::{LwtSeg6localSkel, LwtSeg6localSkelBuilder};
use rstest::rstest;
use testkit::datagram;
use testkit::netlink::Cidr;
use testkit::observe::{self, volatile};
use testkit::packet::{self, ETH_P_IPV6, IPPROTO_UDP};
use testkit::pins::PinDir;
use testkit::test_run::Row;
use testkit::veth::Line;
use testkit::{Case, CaseError, CaseResult, OrError, probe, sockopt};

/// The net of the segments, routed towards `b` by `a` and `r`.
const SID_NET: Cidr = Cidr::v6(Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 16);
/// The End.BPF segment identifier (on `r`).
const SID: Ipv6Addr = Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0xe);
/// The final destination (on `b`'s loopback): the last segment.
const FINAL_DST: Ipv6Addr = Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0xd);
/// The sender.
const S_ADDR: Ipv6Addr = Line::V6.a;
/// The receiver's UDP port on `b`.
const PORT: u16 = 7301;
/// SRH tags: dropped by the program, passed (and retagged), and what it retags to.
const DROP_TAG: u16 = 0x0bad;
const PASS_TAG: u16 = 0x0101;
const NEW_TAG: u16 = 0xbeef;
/// Datagrams sent per flow.
const DATAGRAMS: usize = 3;
/// The payload sent behind the tagged datagrams ([`observe::until_sentinel`]).
const SENTINEL: &str = "sentinel";
/// `enum bpf_ret_code` (linux/bpf.h).
const BPF_DROP: i32 = 2;
/// IPv6 next header of a routing header, and the SRH's routing type.
const IPPROTO_ROUTING: u8 = 43;
const SRH_TYPE: u8 = 4;

fn open_and_load<'obj>(
    case: &mut Case,
    object: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
) -> CaseResult<LwtSeg6localSkel<'obj>> {
    probe::prog_type(ProgramType::LwtSeg6local)?;
    case.open_load(LwtSeg6localSkelBuilder::default(), object, |open| {
        let rodata = open.maps.rodata_data.as_deref_mut().expect(".rodata");
        rodata.drop_tag = DROP_TAG;
        rodata.new_tag = NEW_TAG;
    })
}

/// iproute2 must know the End.BPF action (`ip route help` lists it since iproute2 4.18): a
/// tool too old is the environment's, an `error` saying what to install.
fn probe_iproute2_end_bpf() -> CaseResult {
    let help = duct::cmd!("ip", "-6", "route", "help")
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .or_error("running ip (install iproute2: ci/setup)")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&help.stdout),
        String::from_utf8_lossy(&help.stderr)
    );
    if text.contains("End.BPF") {
        return Ok(());
    }
    let version = duct::cmd!("ip", "-V")
        .read()
        .unwrap_or_else(|_| "iproute2 of unknown version".into());
    Err(CaseError::Error(anyhow::anyhow!(
        "{}: `ip route help` lists no seg6local action End.BPF; install iproute2 4.18 or newer \
         (ci/setup)",
        version.trim()
    )))
}

/// One received datagram: its payload and, when it carried one, its SRH.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Received {
    payload: String,
    srh: Option<Srh>,
}

/// The fields of a received SRH the case checks.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Srh {
    segments_left: u8,
    tag: u16,
    segments: Vec<Ipv6Addr>,
}

impl Received {
    /// For the case's record.
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "payload": self.payload,
            "srh": self.srh.as_ref().map(|h| serde_json::json!({
                "segments_left": h.segments_left,
                "tag": format!("{:#06x}", h.tag),
                "segments": h.segments.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })),
        })
    }
}

impl Srh {
    fn parse(bytes: &[u8]) -> Option<Srh> {
        if bytes.len() < 8 || bytes[2] != SRH_TYPE {
            return None;
        }
        let segments = bytes[8..]
            .chunks_exact(16)
            .map(|c| Ipv6Addr::from(<[u8; 16]>::try_from(c).expect("16 bytes")))
            .collect();
        Some(Srh {
            segments_left: bytes[3],
            tag: u16::from_be_bytes([bytes[6], bytes[7]]),
            segments,
        })
    }
}

/// An SRH (type 4) with `segments` (segment 0 is the last one visited), `segments_left` and `tag`.
fn srh(next_header: u8, segments: &[Ipv6Addr], segments_left: u8, tag: u16) -> Vec<u8> {
    let mut h = vec![
        next_header,
        (segments.len() * 2) as u8, // length in 8-byte units, not counting the first 8 bytes
        SRH_TYPE,
        segments_left,
        (segments.len() - 1) as u8, // last entry
        0,                          // flags
    ];
    h.extend_from_slice(&tag.to_be_bytes());
    for s in segments {
        h.extend_from_slice(&s.octets());
    }
    h
}

/// Makes every later datagram of `sock` carry an SRH [fc00::d, SID], segments_left 1, `tag`. The
/// kernel fills in segment 0 (the socket's destination) and the next header, and sends to SID.
fn set_srh(sock: &UdpSocket, tag: u16) -> CaseResult {
    let header = srh(0, &[Ipv6Addr::UNSPECIFIED, SID], 1, tag);
    sockopt::ipv6_rthdr(sock, &header).map_err(|e| {
        CaseError::Fail(anyhow::anyhow!(
            "setsockopt(IPV6_RTHDR) with a type 4 routing header: {e}"
        ))
    })
}

/// The next datagram on `sock` within `wait`, with the routing header it carried.
fn receive(sock: &UdpSocket, wait: Duration) -> CaseResult<Option<Received>> {
    Ok(datagram::receive(sock, wait)?.map(|d| Received {
        payload: d.text(),
        srh: d.ipv6_rthdr.as_deref().and_then(Srh::parse),
    }))
}

#[test]
fn end_bpf_drops_and_retags() {
    Case::run(ProgramType::LwtSeg6local, |case| {
        let mut object = MaybeUninit::uninit();
        let mut skel = open_and_load(case, &mut object)?;
        probe::config_builtin("CONFIG_IPV6_SEG6_LWTUNNEL")?;
        probe::config_builtin("CONFIG_IPV6_SEG6_BPF")?;
        probe_iproute2_end_bpf()?;
        let line = Line::ipv6(SID_NET, &[FINAL_DST])?;
        for dev in ["all", Line::B_DEV] {
            let path = format!("net/ipv6/conf/{dev}/seg6_enabled");
            line.b.sysctl(Some("sysctl.seg6_enabled"), &path, "1")?;
        }

        {
            let _inside = line.r.enter()?;
            let pins = PinDir::new("lwt_seg6local")?;
            let pin = pins.join("end_bpf_retag");
            skel.progs
                .end_bpf_retag
                .pin(&pin)
                .or_error("pinning end_bpf_retag")?;
            testkit::netns::attach_tool(
                "ip",
                &[
                    "-6",
                    "route",
                    "add",
                    &format!("{SID}/128"),
                    "encap",
                    "seg6local",
                    "action",
                    "End.BPF",
                    "endpoint",
                    "pinned",
                    &pin.to_string_lossy(),
                    "dev",
                    Line::R_A_DEV,
                ],
            )?;
        }

        let receiver = {
            let _inside = line.b.enter()?;
            let sock = UdpSocket::bind(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, PORT, 0, 0))
                .or_error("binding the receiver")?;
            sockopt::ipv6_recv_rthdr(&sock).or_error("setsockopt(IPV6_RECVRTHDR)")?;
            sock
        };
        let (plain_tx, srv6_tx) = {
            let _inside = line.a.enter()?;
            let bind =
                || UdpSocket::bind(SocketAddrV6::new(S_ADDR, 0, 0, 0)).or_error("binding a sender");
            (bind()?, bind()?)
        };

        // Warm-up without an SRH: resolves both hops' neighbours; End.BPF is not on its path.
        plain_tx.send_to(b"warm-up", (FINAL_DST, PORT))?;
        let warm = receive(&receiver, Duration::from_secs(5))?;
        if warm.as_ref().map(|r| r.payload.as_str()) != Some("warm-up") {
            return Err(CaseError::Error(anyhow::anyhow!(
                "the warm-up datagram to {FINAL_DST} did not arrive ({warm:?}): the topology is broken"
            )));
        }
        assert_eq!(volatile(&skel.maps.bss_data.as_deref().unwrap().seen), 0);

        let mut expected = Vec::new();
        // One CPU: the datagrams of one socket stay in order up to End.BPF.
        let one_cpu = observe::OneCpu::pin()?;
        for (tag, word) in [(DROP_TAG, "drop"), (PASS_TAG, "pass")] {
            set_srh(&srv6_tx, tag)?;
            for i in 0..DATAGRAMS {
                srv6_tx.send_to(format!("{word} {i}").as_bytes(), (FINAL_DST, PORT))?;
            }
        }
        for i in 0..DATAGRAMS {
            plain_tx.send_to(format!("plain {i}").as_bytes(), (FINAL_DST, PORT))?;
        }
        // Behind the DROP_TAG datagrams, on their socket and through End.BPF (PASS_TAG, as the
        // socket's SRH now says): once it arrived, a dropped datagram can no longer come.
        srv6_tx.send_to(SENTINEL.as_bytes(), (FINAL_DST, PORT))?;
        drop(one_cpu);
        for i in 0..DATAGRAMS {
            expected.push(Received {
                payload: format!("pass {i}"),
                srh: Some(Srh {
                    segments_left: 0,
                    tag: NEW_TAG,
                    segments: vec![FINAL_DST, SID],
                }),
            });
            expected.push(Received {
                payload: format!("plain {i}"),
                srh: None,
            });
        }
        expected.sort();

        let mut got = observe::until_sentinel(
            "the sentinel behind the tagged datagrams",
            |wait| receive(&receiver, wait),
            |r| r.payload == SENTINEL,
        )?;
        // The datagrams without an SRH take another path and may still be on it: they must come.
        while got.len() < expected.len() {
            match receive(&receiver, Duration::from_secs(2))? {
                Some(r) => got.push(r),
                None => break,
            }
        }
        got.sort();
        case.detail(
            "received",
            got.iter().map(Received::to_json).collect::<Vec<_>>(),
        );
        assert_eq!(
            got, expected,
            "datagrams (and their SRH) that reached {FINAL_DST}"
        );

        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
        let counters = [
            ("seen", volatile(&bss.seen)),
            ("dropped", volatile(&bss.dropped)),
            ("retagged", volatile(&bss.retagged)),
            ("not_srh", volatile(&bss.not_srh)),
            ("store_failed", volatile(&bss.store_failed)),
            (
                "last_segments_left",
                u64::from(volatile(&bss.last_segments_left)),
            ),
        ];
        for (name, value) in counters {
            case.detail(name, value);
        }
        // The sentinel is one more SRv6 datagram, retagged.
        let n = DATAGRAMS as u64;
        assert_eq!(
            counters,
            [
                ("seen", 2 * n + 1),
                ("dropped", n),
                ("retagged", n + 1),
                ("not_srh", 0),
                ("store_failed", 0),
                // End had decremented it from 1 before the program ran.
                ("last_segments_left", 0),
            ],
            "the program's counters"
        );
        Ok(())
    });
}

/// Which counter a test-run row expects to have moved.
#[derive(Clone, Copy, Debug)]
enum Counted {
    /// `dropped` (an SRH with DROP_TAG).
    Dropped,
    /// `not_srh` (no complete SRH after the IPv6 header).
    NotSrh,
}

#[rstest]
#[case::drops_drop_tag(srv6_frame(DROP_TAG, 1), Counted::Dropped)]
#[case::drops_drop_tag_at_last_segment(srv6_frame(DROP_TAG, 0), Counted::Dropped)]
#[case::drops_packet_without_srh(plain_frame(), Counted::NotSrh)]
#[case::drops_truncated_srh(truncated_srv6_frame(), Counted::NotSrh)]
fn test_run(#[case] frame: Vec<u8>, #[case] counted: Counted) {
    // One run, nothing retagged, and the counter of the row's kind moved.
    let mut counters = vec![("seen", 1), ("retagged", 0)];
    counters.extend(match counted {
        Counted::Dropped => [("dropped", 1), ("not_srh", 0)],
        Counted::NotSrh => [("dropped", 0), ("not_srh", 1)],
    });
    if let Counted::Dropped = counted {
        // No End behaviour under a test run: the program sees the SRH as crafted.
        let crafted_left = frame[packet::ETH_HLEN + 40 + 3];
        counters.push(("last_segments_left", u64::from(crafted_left)));
        counters.push(("last_tag", u64::from(DROP_TAG)));
    }
    let row = Row::new(frame, BPF_DROP).counters(counters);
    row.case(ProgramType::LwtSeg6local, |case, row| {
        let mut object = MaybeUninit::uninit();
        let skel = open_and_load(case, &mut object)?;
        row.run_counted(case, &skel.progs.end_bpf_retag, || {
            let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
            Ok(vec![
                ("seen", volatile(&bss.seen)),
                ("retagged", volatile(&bss.retagged)),
                ("dropped", volatile(&bss.dropped)),
                ("not_srh", volatile(&bss.not_srh)),
                (
                    "last_segments_left",
                    u64::from(volatile(&bss.last_segments_left)),
                ),
                ("last_tag", u64::from(volatile(&bss.last_tag))),
            ])
        })
        .map(drop)
    });
}

/// An Ethernet frame: IPv6 `S_ADDR → SID` with an SRH [fc00::d, SID] (`segments_left`, `tag`)
/// and a UDP datagram.
fn srv6_frame(tag: u16, segments_left: u8) -> Vec<u8> {
    let mut payload = srh(IPPROTO_UDP, &[FINAL_DST, SID], segments_left, tag);
    payload.extend(packet::udp(40000, PORT, b"srv6"));
    packet::ethernet(
        ETH_P_IPV6,
        &packet::ipv6(S_ADDR.octets(), SID.octets(), IPPROTO_ROUTING, 0, &payload),
    )
}

/// IPv6 UDP `S_ADDR → SID` without an SRH.
fn plain_frame() -> Vec<u8> {
    packet::ethernet(
        ETH_P_IPV6,
        &packet::ipv6(
            S_ADDR.octets(),
            SID.octets(),
            IPPROTO_UDP,
            0,
            &packet::udp(40000, PORT, b"plain, no SRH"),
        ),
    )
}

/// [`srv6_frame`] cut 4 bytes into its SRH.
fn truncated_srv6_frame() -> Vec<u8> {
    let mut f = srv6_frame(DROP_TAG, 1);
    f.truncate(packet::ETH_HLEN + 40 + 4);
    f
}
