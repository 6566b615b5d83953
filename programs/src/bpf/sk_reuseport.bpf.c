// SPDX-License-Identifier: GPL-2.0
/*
 * sk_reuseport: picks the socket of a SO_REUSEPORT group that receives a packet
 * (SO_ATTACH_REUSEPORT_EBPF on one socket of the group).
 *
 * The group's sockets are in `sockets` (a REUSEPORT_SOCKARRAY) at keys 0..3. For UDP the first
 * payload byte decides (after the 8-byte UDP header: the context's data starts at the transport
 * header): a digit '0'..'3' selects the socket at that key (bpf_sk_select_reuseport), 'x' drops
 * the packet (SK_DROP: no socket receives it), anything else passes without a choice (the kernel
 * picks by hash). For TCP a SYN has no payload: the low two bits of the client's source port
 * select the listener, and source ports ending in 0xff are dropped.
 * `selected`, `dropped`, `unchosen` and `select_errors` count what the program did.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define GROUP_SIZE 4
#define UDP_HEADER_LEN 8

struct {
	__uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
	__uint(max_entries, GROUP_SIZE);
	__type(key, __u32);
	__type(value, __u32);
} sockets SEC(".maps");

__u64 selected = 0;
__u64 dropped = 0;
__u64 unchosen = 0;
__u64 select_errors = 0;
/* The last error bpf_sk_select_reuseport returned (0: none). */
__s64 last_error = 0;

static __always_inline int select_key(struct sk_reuseport_md *md, __u32 key)
{
	long err = bpf_sk_select_reuseport(md, &sockets, &key, 0);

	if (err) {
		__sync_fetch_and_add(&select_errors, 1);
		last_error = err;
		return SK_DROP;
	}
	__sync_fetch_and_add(&selected, 1);
	return SK_PASS;
}

SEC("sk_reuseport")
int select_by_payload(struct sk_reuseport_md *md)
{
	__u8 first = 0;
	__u16 sport = 0;

	if (md->ip_protocol == IPPROTO_TCP) {
		/* The SYN's TCP header: source port first. */
		if (bpf_skb_load_bytes(md, 0, &sport, sizeof(sport)) < 0)
			goto drop;
		sport = bpf_ntohs(sport);
		if ((sport & 0xff) == 0xff)
			goto drop;
		return select_key(md, sport & (GROUP_SIZE - 1));
	}

	if (bpf_skb_load_bytes(md, UDP_HEADER_LEN, &first, 1) < 0)
		goto drop;
	if (first >= '0' && first < '0' + GROUP_SIZE)
#ifdef BPFCONF_MUTANT /* maps the digit to the key 1-based (first - '1': off by one) */
		return select_key(md, first - '1');
#else
		return select_key(md, first - '0');
#endif
	if (first == 'x')
		goto drop;
	__sync_fetch_and_add(&unchosen, 1);
	return SK_PASS;
drop:
	__sync_fetch_and_add(&dropped, 1);
	return SK_DROP;
}

char _license[] SEC("license") = "GPL";
