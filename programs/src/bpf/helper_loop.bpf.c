// SPDX-License-Identifier: GPL-2.0
/*
 * bpf_loop (5.17), run by BPF_PROG_TEST_RUN as XDP: calls its callback `iterations` times (set by
 * the test in .bss); the callback adds index + 1 to a sum and counts its calls, and stops the loop
 * (returns 1) at index `stop_at` when that is below `iterations`. The helper's return value is the
 * number of callback calls.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

__u32 iterations = 0;
__u32 stop_at = 0;
__u64 sum = 0;
__u32 calls = 0;
long ret = 0;

struct acc {
	__u64 sum;
	__u32 calls;
};

static long add(__u32 index, void *data)
{
	struct acc *acc = data;

	acc->sum += index + 1;
	acc->calls++;
	return index == stop_at;
}

SEC("xdp")
int loop_sum(struct xdp_md *ctx)
{
	struct acc acc = {};

	ret = bpf_loop(iterations, add, &acc, 0);
	sum = acc.sum;
	calls = acc.calls;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
