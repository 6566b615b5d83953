// SPDX-License-Identifier: GPL-2.0
/*
 * cgroup_device: the device controller of a cgroup v2 child (BPF_CGROUP_DEVICE).
 *
 * Runs when a process in the cgroup opens (or mknods) a device node. Access to the character
 * device `denied_major`:`denied_minor` is refused (verdict 0: open(2) fails with EPERM) and
 * counted in `denied`; every other device is allowed (1) and counted in `allowed`.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* Set by the test before load. */
const volatile __u32 denied_major = 0;
const volatile __u32 denied_minor = 0;

__u64 denied = 0;
__u64 allowed = 0;

SEC("cgroup/dev")
int deny_one_char_device(struct bpf_cgroup_dev_ctx *ctx)
{
	/* Low 16 bits: device type (BPF_DEVCG_DEV_*); high 16 bits: access (BPF_DEVCG_ACC_*). */
	__u32 type = ctx->access_type & 0xffff;

#ifdef BPFCONF_MUTANT /* compares major with denied_minor and minor with denied_major (swapped) */
	if (type == BPF_DEVCG_DEV_CHAR && ctx->major == denied_minor &&
	    ctx->minor == denied_major) {
#else
	if (type == BPF_DEVCG_DEV_CHAR && ctx->major == denied_major &&
	    ctx->minor == denied_minor) {
#endif
		__sync_fetch_and_add(&denied, 1);
		return 0;
	}
	__sync_fetch_and_add(&allowed, 1);
	return 1;
}

char _license[] SEC("license") = "GPL";
