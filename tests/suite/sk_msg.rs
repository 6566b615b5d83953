//! sk_msg (`programs/src/bpf/sk_msg.bpf.c`): a message verdict attached to a sockhash
//! (BPF_MAP_TYPE_SOCKHASH). It runs on every send() of a socket in the hash; the message's first
//! byte decides: `P` passes it to the sender's own peer, `E` redirects it out through the socket
//! at key 1 (bpf_msg_redirect_hash, egress), `I` redirects it into that socket's own receive
//! queue (BPF_F_INGRESS), anything else drops it.
//!
//! Topology, inside a fresh network namespace: loopback TCP connections `c1 → s1` and `c2 → s2`;
//! `c1` is at key 0 of the sockhash, `c2` at key 1.
//! - `passes_and_redirects_by_first_byte`: messages of several sizes sent from `c1`, one send()
//!   each: `s1` must receive exactly the `P` messages, `s2` exactly the `E` ones, `c2` (reading its
//!   own socket) exactly the `I` ones, byte for byte and in order; one verdict per send().
//! - `drop_fails_the_send`: a `D` message's send() fails with EACCES and its bytes arrive nowhere.
//!   The kernel keeps a drop verdict for the socket (`psock->eval` stays `__SK_DROP` when no
//!   `apply_bytes` are set), so the sender's *next* send() fails too without the program running,
//!   while another socket in the hash still passes: what the kernel answers to each send() is
//!   snapshotted per kernel, the EACCES of the dropped one asserted.
//!
//! "Arrived nowhere" is shown by order: behind the messages under test the case sends a sentinel
//! on every path it checks (a `P` one to `s1`, an `E` one out through `c2` to `s2`, an `I` one into
//! `c2`); each path keeps its order, so what a socket read before its sentinel is all that the
//! earlier messages brought it.
//!
//! No test-run cases: the kernel does not implement BPF_PROG_TEST_RUN for sk_msg
//! (`test_run_is_not_implemented` records its answer).

use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use harness::observe::volatile;
use harness::stream::{assert_bytes_eq, read_to_sentinel, tcp_pair};
use harness::{Case, NetNs, OrError, errno, probe, test_run};
use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapCore, MapFlags, ProgramType};
use programs::sk_msg::types::bss as Bss;
use programs::sk_msg::{SkMsgSkel, SkMsgSkelBuilder};

/// How long messages that must arrive may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A message of `len` bytes whose first byte is `kind`; the rest is a pattern that differs per
/// message, so a reordered or corrupted byte is noticed.
fn message(kind: u8, len: usize, seed: usize) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend(
        (1..len).map(|i| (i.wrapping_mul(167) ^ (i >> 6) ^ seed.wrapping_mul(53)) as u8 | 0x80),
    );
    m
}

/// The sentinel message of `kind` (ASCII after the first byte, unlike [`message`]'s bytes).
fn sentinel(kind: u8) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(b" sentinel behind every earlier message");
    m
}

/// Sends `m` in one send() that must take all of it; `what` names the message in the error.
fn send_whole(sock: &mut TcpStream, m: &[u8], what: &str) -> harness::CaseResult {
    let n = sock.write(m).map_err(|e| {
        harness::CaseError::Fail(anyhow::anyhow!("send() of {what} ({} bytes): {e}", m.len()))
    })?;
    if n != m.len() {
        return Err(harness::CaseError::Fail(anyhow::anyhow!(
            "send() of {what} took {n} of its {} bytes",
            m.len()
        )));
    }
    Ok(())
}

/// The skeleton and the sockets of a case: `c1 → s1` (c1 at key 0), `c2 → s2` (c2 at key 1).
struct Topology {
    listener: TcpListener,
    c1: TcpStream,
    s1: TcpStream,
    c2: TcpStream,
    s2: TcpStream,
}

/// Loads the program, attaches it to the sockhash and puts `c1` and `c2` in it; the sockets are
/// made in the network namespace the caller has entered.
fn set_up<'obj>(
    case: &mut Case,
    object: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
) -> harness::CaseResult<(SkMsgSkel<'obj>, Topology)> {
    probe::helper(
        ProgramType::SkMsg,
        libbpf_rs::libbpf_sys::BPF_FUNC_msg_redirect_hash,
        "bpf_msg_redirect_hash",
    )?;
    let skel = case.load(SkMsgSkelBuilder::default().open(object)?)?;
    skel.progs
        .msg_verdict
        .attach_sockmap(skel.maps.sock_hash.as_fd().as_raw_fd())?;
    let listener = TcpListener::bind("127.0.0.1:0").or_error("binding a loopback listener")?;
    let (c1, s1) = tcp_pair(&listener).or_error("connecting c1")?;
    let (c2, s2) = tcp_pair(&listener).or_error("connecting c2")?;
    add_to_hash(&skel, 0, &c1)?;
    add_to_hash(&skel, 1, &c2)?;
    Ok((
        skel,
        Topology {
            listener,
            c1,
            s1,
            c2,
            s2,
        },
    ))
}

fn add_to_hash(skel: &SkMsgSkel, key: u32, sock: &TcpStream) -> harness::CaseResult {
    let fd = sock.as_raw_fd() as u32;
    skel.maps
        .sock_hash
        .update(&key.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)?;
    Ok(())
}

/// Passes and redirects (egress and ingress), decided per send() by the first byte.
#[test]
fn passes_and_redirects_by_first_byte() {
    Case::run(ProgramType::SkMsg, |case| {
        let ns = NetNs::new()?;
        let _inside = ns.enter()?;
        let mut object = MaybeUninit::uninit();
        let (skel, mut t) = set_up(case, &mut object)?;
        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");

        let messages: &[(u8, usize)] = &[
            (b'P', 1),
            (b'E', 1),
            (b'I', 1),
            (b'P', 100),
            (b'E', 1000),
            (b'I', 1000),
            (b'E', 7),
            (b'P', 4096),
            (b'E', 4096),
            (b'I', 4096),
            (b'I', 13),
            (b'P', 17),
        ];
        let (mut to_s1, mut to_s2, mut to_c2) = (Vec::new(), Vec::new(), Vec::new());
        for (seed, &(kind, len)) in messages.iter().enumerate() {
            let m = message(kind, len, seed);
            send_whole(&mut t.c1, &m, &format!("a {} message", kind as char))?;
            match kind {
                b'P' => to_s1.extend_from_slice(&m),
                b'E' => to_s2.extend_from_slice(&m),
                _ => to_c2.extend_from_slice(&m),
            }
        }

        for kind in [b'P', b'E', b'I'] {
            let what = format!("the {} sentinel", kind as char);
            send_whole(&mut t.c1, &sentinel(kind), &what)?;
        }
        let at_s1 = read_to_sentinel(&mut t.s1, &sentinel(b'P'), "the P sentinel at s1", TIMEOUT)?;
        let at_s2 = read_to_sentinel(
            &mut t.s2,
            &sentinel(b'E'),
            "the E sentinel at s2 (redirected out through c2)",
            TIMEOUT,
        )?;
        let at_c2 = read_to_sentinel(
            &mut t.c2,
            &sentinel(b'I'),
            "the I sentinel at c2 (redirected to its ingress)",
            TIMEOUT,
        )?;
        case.detail(
            "bytes_received",
            serde_json::json!({ "s1": at_s1.len(), "s2": at_s2.len(), "c2": at_c2.len() }),
        );
        assert_bytes_eq(&at_s1, &to_s1, "bytes s1 received (passed P messages)");
        assert_bytes_eq(
            &at_s2,
            &to_s2,
            "bytes s2 received (E, redirected out through c2)",
        );
        assert_bytes_eq(
            &at_c2,
            &to_c2,
            "bytes c2 read (I, redirected to its ingress)",
        );

        let count = |kind: u8| messages.iter().filter(|m| m.0 == kind).count() as u64;
        let counts = verdicts(bss);
        case.detail("verdicts_pass_egress_ingress_drop", counts);
        assert_eq!(
            counts,
            [count(b'P') + 1, count(b'E') + 1, count(b'I') + 1, 0],
            "verdicts (pass, egress, ingress, drop), one per send() (the sentinels included)"
        );
        Ok(())
    });
}

/// A dropped message fails its send() with EACCES and arrives nowhere; what the kernel does with
/// the same socket's next send(), and with another socket's, is snapshotted.
#[test]
fn drop_fails_the_send() {
    Case::run(ProgramType::SkMsg, |case| {
        let ns = NetNs::new()?;
        let _inside = ns.enter()?;
        let mut object = MaybeUninit::uninit();
        let (skel, mut t) = set_up(case, &mut object)?;
        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
        let (mut c3, mut s3) = tcp_pair(&t.listener).or_error("connecting c3")?;
        add_to_hash(&skel, 2, &c3)?;

        let before = message(b'P', 50, 1);
        let dropped = message(b'D', 300, 2);
        let after = message(b'P', 60, 3);
        let other = message(b'P', 70, 4);
        let answer_before = send_answer(t.c1.write(&before));
        let verdicts_before = verdicts(bss);
        let answer_dropped = send_answer(t.c1.write(&dropped));
        let verdicts_dropped = verdicts(bss);
        let answer_after = send_answer(t.c1.write(&after));
        let verdicts_after = verdicts(bss);
        let answer_other = send_answer(c3.write(&other));
        let verdicts_other = verdicts(bss);

        // The sentinels: c3's (its sends pass) to s3, out through c2 to s2 and into c2; c1's
        // plainly to s1 once c1 has left the hash (the program would drop its sends).
        for kind in [b'P', b'E', b'I'] {
            let what = format!("c3's {} sentinel", kind as char);
            send_whole(&mut c3, &sentinel(kind), &what)?;
        }
        skel.maps.sock_hash.delete(&0u32.to_ne_bytes())?;
        send_whole(
            &mut t.c1,
            &sentinel(b'P'),
            "c1's sentinel after c1 left the hash",
        )?;
        let at_s1 = read_to_sentinel(
            &mut t.s1,
            &sentinel(b'P'),
            "c1's sentinel (sent after c1 left the hash) at s1",
            TIMEOUT,
        )?;
        let at_s3 = read_to_sentinel(&mut s3, &sentinel(b'P'), "c3's P sentinel at s3", TIMEOUT)?;
        let at_s2 = read_to_sentinel(
            &mut t.s2,
            &sentinel(b'E'),
            "c3's E sentinel at s2 (redirected out through c2)",
            TIMEOUT,
        )?;
        let at_c2 = read_to_sentinel(
            &mut t.c2,
            &sentinel(b'I'),
            "c3's I sentinel at c2 (redirected to its ingress)",
            TIMEOUT,
        )?;
        let observed = serde_json::json!({
            "c1_send_P": answer_before,
            "c1_send_D": answer_dropped,
            "c1_send_P_after_the_drop": answer_after,
            "c3_send_P_after_c1_drop": answer_other,
            "verdicts_pass_egress_ingress_drop_after_each": [
                verdicts_before, verdicts_dropped, verdicts_after, verdicts_other
            ],
            "s1_received": describe(&at_s1, &[&before, &dropped, &after]),
            "s3_received": describe(&at_s3, &[&other]),
        });
        case.detail("observed", &observed);
        case.snapshot(&case.snapshot_name("sends"), &observed);

        assert_eq!(answer_before, "sent 50", "send() of the first P message");
        assert_eq!(verdicts_before, [1, 0, 0, 0], "verdicts after the first P");
        assert_eq!(answer_dropped, "EACCES", "send() of the D message");
        assert_eq!(
            verdicts_dropped,
            [1, 0, 0, 1],
            "verdicts after the D message"
        );
        // s1 receives the P message before the drop, and the one after it if its send() went
        // through on this kernel; never the dropped one.
        let mut to_s1 = before.clone();
        if answer_after == format!("sent {}", after.len()) {
            to_s1.extend_from_slice(&after);
        }
        assert_bytes_eq(&at_s1, &to_s1, "bytes s1 received from c1");
        for (name, stray) in [("s2", &at_s2), ("c2", &at_c2)] {
            assert!(
                stray.is_empty(),
                "{name} received {} stray bytes",
                stray.len()
            );
        }
        let [p, e, i, d] = verdicts_other;
        assert_eq!(
            verdicts(bss),
            [p + 1, e + 1, i + 1, d],
            "verdicts after c3's three sentinels and c1's sent outside the hash"
        );
        assert_eq!(
            answer_other, "sent 70",
            "send() of another socket in the hash"
        );
        assert_bytes_eq(&at_s3, &other, "bytes s3 received from c3");
        Ok(())
    });
}

/// What a send() returned: `sent N` or the errno's name.
fn send_answer(result: io::Result<usize>) -> String {
    match result {
        Ok(n) => format!("sent {n}"),
        Err(e) => errno::describe(&e),
    }
}

/// Names which of `messages` `bytes` is made of, in order (`#0`, `#2`, …), or `other bytes`.
fn describe(bytes: &[u8], messages: &[&[u8]]) -> String {
    let mut rest = bytes;
    let mut parts = Vec::new();
    'outer: while !rest.is_empty() {
        for (i, m) in messages.iter().enumerate() {
            if rest.starts_with(m) {
                parts.push(format!("#{i}"));
                rest = &rest[m.len()..];
                continue 'outer;
            }
        }
        parts.push(format!("{} other bytes", rest.len()));
        break;
    }
    if parts.is_empty() {
        "nothing".to_owned()
    } else {
        parts.join(" ")
    }
}

/// The program's verdict counters: pass, egress redirect, ingress redirect, drop.
fn verdicts(bss: &Bss) -> [u64; 4] {
    [
        volatile(&bss.passed),
        volatile(&bss.redirected_egress),
        volatile(&bss.redirected_ingress),
        volatile(&bss.dropped),
    ]
}

/// BPF_PROG_TEST_RUN on sk_msg programs: the kernel does not implement it for this type; the case
/// records its answer and fails if that ever changes (then add test-run cases).
#[test]
fn test_run_is_not_implemented() {
    Case::run(ProgramType::SkMsg, |case| {
        probe::prog_type(ProgramType::SkMsg)?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(SkMsgSkelBuilder::default().open(&mut object)?)?;
        test_run::assert_not_implemented(case, &skel.progs.msg_verdict, &message(b'P', 16, 0))
    });
}
