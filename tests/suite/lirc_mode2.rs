//! LIRC mode2 programs (`programs/src/bpf/lirc_mode2.bpf.c`): an IR decoder attached to the
//! `/dev/lircN` of rc-loopback, which loops what is written to the lirc device (transmit) back to
//! its receiver. The test transmits a frame of the decoder's code and reads the receiver's input
//! device: exactly the frame's scancode (EV_MSC/MSC_SCAN) and relative move (REL_X, REL_Y).
//! After the program is detached, the same frame produces no input event.
//!
//! Order, not time: the kernel runs the attached program on each raw sample before it queues the
//! sample for the lirc device's readers, and the program reports synchronously. So once the test
//! has read the frame's trailer back from the lirc device, every input event the frame caused is
//! already in the input device's queue.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use libbpf_rs::libbpf_sys::{self, BPF_FUNC_rc_keydown, BPF_FUNC_rc_pointer_rel, BPF_LIRC_MODE2};
use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{Program, ProgramType};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use programs::lirc_mode2::LircMode2SkelBuilder;
use testkit::observe::volatile;
use testkit::{Case, CaseError, CaseResult, OrError, floors, probe};

/// The decoder's timing (lirc_mode2.bpf.c): leader pulse and space, bit pulse, 0 and 1 spaces.
const LEADER_PULSE: u32 = 4500;
const LEADER_SPACE: u32 = 2000;
const BIT_PULSE: u32 = 300;
const ZERO_SPACE: u32 = 300;
const ONE_SPACE: u32 = 900;
/// `LIRC_MODE2_PULSE` / `LIRC_MODE2_SPACE` and the duration mask of a raw sample (linux/lirc.h).
const PULSE: u32 = 0x0100_0000;
const SPACE: u32 = 0x0000_0000;
const MODE_MASK: u32 = 0xff00_0000;
/// linux/input-event-codes.h.
const EV_SYN: u16 = 0;
const EV_REL: u16 = 2;
const EV_MSC: u16 = 4;
const REL_X: u16 = 0;
const REL_Y: u16 = 1;
const MSC_SCAN: u16 = 4;
/// How long the lirc device may take to hand a transmitted frame back (a harness limit: the frame
/// lasts 40 ms).
const ECHO_DEADLINE_MS: u16 = 30_000;

/// The frame of `scancode`, `rel_x`, `rel_y` as lirc transmit samples (pulse, space, …, pulse).
fn frame(scancode: u16, rel_x: i8, rel_y: i8) -> Vec<u32> {
    let bits = u32::from(scancode) | u32::from(rel_x as u8) << 16 | u32::from(rel_y as u8) << 24;
    let mut samples = vec![LEADER_PULSE, LEADER_SPACE];
    for bit in 0..32 {
        let space = if bits >> bit & 1 == 1 {
            ONE_SPACE
        } else {
            ZERO_SPACE
        };
        samples.extend([BIT_PULSE, space]);
    }
    samples.push(BIT_PULSE);
    samples
}

/// The rc-loopback receiver: its lirc device and its input device.
struct Loopback {
    lirc: PathBuf,
    input: PathBuf,
}

/// Finds rc-loopback under /sys/class/rc (`DRV_NAME=rc-loopback` in an rc device's uevent).
fn loopback() -> CaseResult<Loopback> {
    probe::config_enabled("CONFIG_RC_LOOPBACK")?;
    let class = Path::new("/sys/class/rc");
    let mut found = None;
    for entry in fs::read_dir(class).into_iter().flatten().flatten() {
        let uevent = fs::read_to_string(entry.path().join("uevent")).unwrap_or_default();
        if uevent.lines().any(|l| l == "DRV_NAME=rc-loopback") {
            found = Some(entry.path());
        }
    }
    let Some(rc) = found else {
        return Err(floors::missing(
            "kconfig.CONFIG_RC_LOOPBACK",
            format!(
                "no rc device of driver rc-loopback under {}",
                class.display()
            ),
        ));
    };
    let child = |dir: &Path, prefix: &str| -> CaseResult<String> {
        fs::read_dir(dir)
            .or_error("listing an rc device")?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with(prefix))
            .ok_or_else(|| {
                CaseError::Error(anyhow::anyhow!("{} has no {prefix}* entry", dir.display()))
            })
    };
    let lirc = child(&rc, "lirc")?;
    let input = rc.join(child(&rc, "input")?);
    let event = child(&input, "event")?;
    Ok(Loopback {
        lirc: Path::new("/dev").join(lirc),
        input: Path::new("/dev/input").join(event),
    })
}

/// The decoder attached to a lirc device; detached on drop unless [`Attached::detach`] did.
struct Attached<'a> {
    prog: BorrowedFd<'a>,
    lirc: BorrowedFd<'a>,
    attached: bool,
}

impl<'a> Attached<'a> {
    fn new(prog: BorrowedFd<'a>, lirc: BorrowedFd<'a>) -> CaseResult<Self> {
        // SAFETY: two open fds; BPF_PROG_ATTACH with the lirc device as target.
        let ret = unsafe {
            libbpf_sys::bpf_prog_attach(prog.as_raw_fd(), lirc.as_raw_fd(), BPF_LIRC_MODE2, 0)
        };
        check(ret, "BPF_PROG_ATTACH (BPF_LIRC_MODE2)")?;
        Ok(Attached {
            prog,
            lirc,
            attached: true,
        })
    }

    fn detach(&mut self) -> CaseResult {
        self.attached = false;
        // SAFETY: as in `new`.
        let ret = unsafe {
            libbpf_sys::bpf_prog_detach2(
                self.prog.as_raw_fd(),
                self.lirc.as_raw_fd(),
                BPF_LIRC_MODE2,
            )
        };
        check(ret, "BPF_PROG_DETACH (BPF_LIRC_MODE2)")?;
        Ok(())
    }
}

impl Drop for Attached<'_> {
    fn drop(&mut self) {
        if self.attached {
            let _ = self.detach();
        }
    }
}

/// A libbpf result (a negative errno) as the case's failure.
fn check(ret: i32, what: &str) -> CaseResult {
    if ret < 0 {
        return Err(CaseError::Fail(anyhow::anyhow!(
            "{what}: {}",
            std::io::Error::from_raw_os_error(-ret)
        )));
    }
    Ok(())
}

/// The ids of the programs attached to the lirc device (BPF_PROG_QUERY).
fn attached_ids(lirc: BorrowedFd) -> CaseResult<Vec<u32>> {
    let mut ids = [0u32; 8];
    let mut count = ids.len() as u32;
    let mut flags = 0u32;
    // SAFETY: `ids` holds `count` entries; the kernel writes at most that many.
    let ret = unsafe {
        libbpf_sys::bpf_prog_query(
            lirc.as_raw_fd(),
            BPF_LIRC_MODE2,
            0,
            &mut flags,
            ids.as_mut_ptr(),
            &mut count,
        )
    };
    check(ret, "BPF_PROG_QUERY (BPF_LIRC_MODE2)")?;
    Ok(ids[..count as usize].to_vec())
}

/// Transmits `samples` and reads the receiver's raw samples back until the whole frame is there:
/// from then on, the input events the frame caused are queued. Returns the samples read.
fn transmit_and_echo(mut lirc: &File, samples: &[u32]) -> CaseResult<Vec<u32>> {
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_ne_bytes()).collect();
    lirc.write_all(&bytes)
        .or_error("transmitting on the lirc device")?;
    let mut echoed = Vec::new();
    while from_leader(&echoed).len() < samples.len() {
        let mut fds = [PollFd::new(lirc.as_fd(), PollFlags::POLLIN)];
        let ready = poll(&mut fds, PollTimeout::from(ECHO_DEADLINE_MS)).or_error("polling lirc")?;
        if ready == 0 {
            return Err(CaseError::Error(anyhow::anyhow!(
                "rc-loopback did not hand the frame back within {ECHO_DEADLINE_MS} ms (read {} samples)",
                echoed.len()
            )));
        }
        let mut buf = [0u8; 4 * 256];
        let n = lirc.read(&mut buf).or_error("reading the lirc device")?;
        echoed.extend(
            buf[..n]
                .chunks_exact(4)
                .map(|c| u32::from_ne_bytes(c.try_into().expect("4 bytes"))),
        );
    }
    Ok(echoed)
}

/// The pulses and spaces of `echoed` from the frame's leader on, as transmit samples.
fn from_leader(echoed: &[u32]) -> Vec<u32> {
    let start = echoed
        .iter()
        .position(|&s| s == PULSE | LEADER_PULSE)
        .unwrap_or(echoed.len());
    echoed[start..]
        .iter()
        .filter(|&&s| matches!(s & MODE_MASK, PULSE | SPACE))
        .map(|&s| s & !MODE_MASK)
        .collect()
}

/// The queued input events (type, code, value) other than EV_SYN, read without waiting.
fn queued_events(input: &mut File) -> CaseResult<Vec<(u16, u16, i32)>> {
    let mut events = Vec::new();
    let mut buf = [0u8; 24 * 64];
    loop {
        match input.read(&mut buf) {
            Ok(n) => {
                // struct input_event: struct timeval (16 bytes), __u16 type, __u16 code, __s32 value.
                for e in buf[..n].chunks_exact(24) {
                    let ty = u16::from_ne_bytes([e[16], e[17]]);
                    let code = u16::from_ne_bytes([e[18], e[19]]);
                    let value = i32::from_ne_bytes([e[20], e[21], e[22], e[23]]);
                    if ty != EV_SYN {
                        events.push((ty, code, value));
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(events),
            Err(e) => {
                return Err(CaseError::Error(anyhow::anyhow!(
                    "reading the input device: {e}"
                )));
            }
        }
    }
}

#[test]
fn decodes_a_frame_until_detached() {
    Case::run(ProgramType::LircMode2, |case| {
        probe::prog_type(ProgramType::LircMode2)?;
        probe::helper(
            ProgramType::LircMode2,
            BPF_FUNC_rc_keydown,
            "bpf_rc_keydown",
        )?;
        probe::helper(
            ProgramType::LircMode2,
            BPF_FUNC_rc_pointer_rel,
            "bpf_rc_pointer_rel",
        )?;
        let devices = loopback()?;
        case.detail("lirc", devices.lirc.display().to_string());
        case.detail("input", devices.input.display().to_string());
        let lirc = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&devices.lirc)
            .or_error("opening the lirc device")?;
        let mut input = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&devices.input)
            .or_error("opening the input device")?;

        let mut object = MaybeUninit::uninit();
        let skel = case.load(LircMode2SkelBuilder::default().open(&mut object)?)?;
        let prog = skel.progs.decode.as_fd();
        let prog_id = Program::id_from_fd(prog)?;
        let mut attached = Attached::new(prog, lirc.as_fd())?;
        assert_eq!(
            attached_ids(lirc.as_fd())?,
            [prog_id],
            "the programs attached to the lirc device"
        );

        let pid = nix::unistd::getpid().as_raw().unsigned_abs();
        let scancode = 0x4000 | (pid & 0x3fff) as u16;
        let (rel_x, rel_y) = (7i8, -5i8);
        case.detail("scancode", format!("{scancode:#06x}"));
        let samples = frame(scancode, rel_x, rel_y);
        let echoed = transmit_and_echo(&lirc, &samples)?;
        assert_eq!(
            from_leader(&echoed),
            samples,
            "the raw samples rc-loopback received (what the program saw)"
        );
        assert_eq!(
            queued_events(&mut input)?,
            [
                (EV_MSC, MSC_SCAN, i32::from(scancode)),
                (EV_REL, REL_X, i32::from(rel_x)),
                (EV_REL, REL_Y, i32::from(rel_y)),
            ],
            "the input events of one decoded frame (type, code, value)"
        );
        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
        assert_eq!(volatile(&bss.frames), 1, "frames the program decoded");

        attached.detach()?;
        assert_eq!(
            attached_ids(lirc.as_fd())?,
            Vec::<u32>::new(),
            "programs attached after the detach"
        );
        let echoed = transmit_and_echo(&lirc, &samples)?;
        assert_eq!(
            from_leader(&echoed),
            samples,
            "the second frame's raw samples"
        );
        assert_eq!(
            queued_events(&mut input)?,
            Vec::<(u16, u16, i32)>::new(),
            "input events of a frame sent after the detach"
        );
        assert_eq!(volatile(&bss.frames), 1, "frames decoded after the detach");
        Ok(())
    });
}
