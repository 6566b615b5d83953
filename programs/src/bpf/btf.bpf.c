// SPDX-License-Identifier: GPL-2.0
/*
 * BTF: a socket filter built with BTF (libbpf-cargo compiles with -g, so the object carries .BTF
 * and .BTF.ext: types, func info, line info). Its map's value is a struct that BTF describes; the
 * program reads what user space wrote into it and updates it on every packet.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* One flow's statistics; tests/btf.rs declares the same layout. */
struct flow_stats {
	__u64 packets;
	__u64 bytes;
	__u32 last_len;
	/* Written by user space; the program stores its complement in `echo`. */
	__u32 marker;
	__u32 echo;
	__u32 reserved;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct flow_stats);
} stats SEC(".maps");

SEC("socket")
int count_packets(struct __sk_buff *skb)
{
	__u32 key = 0;
	struct flow_stats *s = bpf_map_lookup_elem(&stats, &key);

	if (!s)
		return 0;
	s->packets += 1;
	s->bytes += skb->len;
	s->last_len = skb->len;
	s->echo = ~s->marker;
	return skb->len;
}

char _license[] SEC("license") = "GPL";
