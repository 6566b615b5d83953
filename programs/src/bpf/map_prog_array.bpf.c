// SPDX-License-Identifier: GPL-2.0
/*
 * BPF_MAP_TYPE_PROG_ARRAY (4.2), the map-level rules the tail calls of tail_calls.bpf.c rely on:
 * `dispatch` (socket filter) tail-calls the program in slot 0 of `jumps` and returns 1 when the
 * slot is empty; `callee` (socket filter) returns 7. `other_type` (XDP) is a program of another
 * type, which the array (owned by socket filters once `dispatch` loaded) must refuse.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} jumps SEC(".maps");

SEC("socket")
int dispatch(struct __sk_buff *skb)
{
#ifdef BPFCONF_MUTANT /* tail-calls slot 1 instead of slot 0 */
	bpf_tail_call(skb, &jumps, 1);
#else
	bpf_tail_call(skb, &jumps, 0);
#endif
	return 1;
}

SEC("socket")
int callee(struct __sk_buff *skb)
{
	return 7;
}

SEC("xdp")
int other_type(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
