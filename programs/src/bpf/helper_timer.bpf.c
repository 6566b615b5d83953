// SPDX-License-Identifier: GPL-2.0
/*
 * BPF timers (bpf_timer_init/set_callback/start, 5.15), armed by an XDP program run by
 * BPF_PROG_TEST_RUN: the timer in the map's only value fires `delay_ns` later (CLOCK_MONOTONIC)
 * and its callback writes the test's cookie and the time it ran into the same value, which the
 * test reads through the map.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define CLOCK_MONOTONIC 1

struct elem {
	struct bpf_timer timer;
	__u64 cookie;
	__u64 armed_ns;
	__u64 fired_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct elem);
} timers SEC(".maps");

__u64 cookie = 0;
__u64 delay_ns = 0;
long err = 0;

static int fire(void *map, __u32 *key, struct elem *elem)
{
	elem->fired_ns = bpf_ktime_get_ns();
	elem->cookie = cookie;
	return 0;
}

SEC("xdp")
int arm(struct xdp_md *ctx)
{
	__u32 key = 0;
	struct elem *elem = bpf_map_lookup_elem(&timers, &key);

	if (!elem)
		return XDP_ABORTED;
	err = bpf_timer_init(&elem->timer, &timers, CLOCK_MONOTONIC);
	if (err)
		return XDP_ABORTED;
	err = bpf_timer_set_callback(&elem->timer, fire);
	if (err)
		return XDP_ABORTED;
	elem->armed_ns = bpf_ktime_get_ns();
	err = bpf_timer_start(&elem->timer, delay_ns, 0);
	return err ? XDP_ABORTED : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
