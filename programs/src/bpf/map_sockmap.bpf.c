// SPDX-License-Identifier: GPL-2.0
/*
 * BPF_MAP_TYPE_SOCKMAP (4.14), the map-level rules sk_skb.bpf.c and sk_skb_verdict.bpf.c rely on:
 * `to_slot_1` (an skb verdict) redirects every skb to the socket in slot 1 of `socks`. The test
 * loads it (the map is the program's) and checks what user space may put in the map.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
#ifdef BPFCONF_MUTANT /* the map holds 5 slots instead of 4 (off by one) */
	__uint(max_entries, 5);
#else
	__uint(max_entries, 4);
#endif
	__type(key, __u32);
	__type(value, __u64);
} socks SEC(".maps");

SEC("sk_skb/stream_verdict")
int to_slot_1(struct __sk_buff *skb)
{
	return bpf_sk_redirect_map(skb, &socks, 1, 0);
}

char LICENSE[] SEC("license") = "GPL";
