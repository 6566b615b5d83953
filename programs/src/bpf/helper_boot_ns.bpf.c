// SPDX-License-Identifier: GPL-2.0
/*
 * bpf_ktime_get_boot_ns (5.8), run by BPF_PROG_TEST_RUN as XDP: stores the boot-time clock
 * (CLOCK_BOOTTIME, suspend included) in .bss, for the test to place between its own readings.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

__u64 boot_ns = 0;

SEC("xdp")
int read_boot_ns(struct xdp_md *ctx)
{
	boot_ns = bpf_ktime_get_boot_ns();
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
