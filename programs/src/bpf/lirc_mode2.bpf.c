// SPDX-License-Identifier: GPL-2.0
/*
 * lirc_mode2: an IR decoder attached to a /dev/lircN (BPF_LIRC_MODE2). It runs on every raw sample
 * the receiver reports (LIRC_MODE2_PULSE/SPACE/TIMEOUT | duration in microseconds) and decodes a
 * pulse-distance code of its own:
 *
 *   leader    a pulse of at least LEADER_US, then a space of at least MARK_US (ignored);
 *   32 bits   each a short pulse, then a space: shorter than ONE_US is 0, else 1; least
 *             significant bit first;
 *   trailer   a short pulse (ends the last space).
 *
 * At the 32nd bit it reports bits 0-15 as a scancode (bpf_rc_keydown: EV_MSC/MSC_SCAN on the
 * receiver's input device) and bits 16-23 and 24-31 as a signed relative move
 * (bpf_rc_pointer_rel: REL_X, REL_Y). `frames` counts the frames decoded.
 */
#include <linux/bpf.h>
#include <linux/lirc.h>
#include <bpf/bpf_helpers.h>

#define LEADER_US 3000
#define MARK_US 1500
#define ONE_US 600
#define FRAME_BITS 32

__u32 bits = 0;
__u32 nbits = 0;
__u32 armed = 0;
__u64 frames = 0;

SEC("lirc_mode2")
int decode(unsigned int *sample)
{
	unsigned int value = *sample;
	unsigned int duration = LIRC_VALUE(value);

	if (LIRC_IS_PULSE(value)) {
		if (duration >= LEADER_US) {
			bits = 0;
			nbits = 0;
			armed = 1;
		}
		return 0;
	}
	if (!LIRC_IS_SPACE(value) || !armed || duration >= MARK_US)
		return 0;
#ifdef BPFCONF_MUTANT /* reads a long space as 0 and a short one as 1 (the bit values inverted) */
	if (duration < ONE_US)
#else
	if (duration >= ONE_US)
#endif
		bits |= 1u << (nbits & 31);
	nbits++;
	if (nbits < FRAME_BITS)
		return 0;
	armed = 0;
	frames++;
	bpf_rc_keydown(sample, 0, bits & 0xffff, 0);
	bpf_rc_pointer_rel(sample, (__s8)(bits >> 16), (__s8)(bits >> 24));
	return 0;
}

char _license[] SEC("license") = "GPL";
