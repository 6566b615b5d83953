// SPDX-License-Identifier: GPL-2.0
/*
 * BPF_MAP_TYPE_LPM_TRIE as programs use it: an XDP filter that looks a packet's source address up
 * in a trie of prefixes (IPv4 and IPv6, BPF_F_NO_PREALLOC as the type requires), drops it when the
 * longest matching prefix's rule says so, and leaves that rule's id in `matched` (NO_MATCH when no
 * prefix matched: the packet passes).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define NO_MATCH 0xffffffff

struct key4 {
	__u32 prefixlen;
	__u8 addr[4];
};

struct key6 {
	__u32 prefixlen;
	__u8 addr[16];
};

struct rule {
	__u32 id;
	__u32 drop;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 8);
	__type(key, struct key4);
	__type(value, struct rule);
} rules4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 8);
	__type(key, struct key6);
	__type(value, struct rule);
} rules6 SEC(".maps");

__u32 matched;

SEC("xdp")
int filter(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct rule *rule = 0;

	matched = NO_MATCH;
	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		struct key4 key = { .prefixlen = 32 };

		if ((void *)(ip + 1) > end)
			return XDP_PASS;
#ifdef BPFCONF_MUTANT /* IPv4 looks up the destination address instead of the source */
		__builtin_memcpy(key.addr, &ip->daddr, sizeof(key.addr));
#else
		__builtin_memcpy(key.addr, &ip->saddr, sizeof(key.addr));
#endif
		rule = bpf_map_lookup_elem(&rules4, &key);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		struct key6 key = { .prefixlen = 128 };

		if ((void *)(ip6 + 1) > end)
			return XDP_PASS;
		__builtin_memcpy(key.addr, &ip6->saddr, sizeof(key.addr));
		rule = bpf_map_lookup_elem(&rules6, &key);
	}
	if (!rule)
		return XDP_PASS;
	matched = rule->id;
	return rule->drop ? XDP_DROP : XDP_PASS;
}

char _license[] SEC("license") = "GPL";
