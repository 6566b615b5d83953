// SPDX-License-Identifier: GPL-2.0
/* socket_filter: a filter for a UDP socket (SO_ATTACH_BPF), deciding on the first payload byte.
 *
 * A socket filter returns how many bytes of the packet the socket keeps, counted from skb->data:
 * 0 drops the packet, less than skb->len truncates it. Where skb->data points depends on the
 * caller (the UDP header when a UDP socket receives, the IP header under BPF_PROG_TEST_RUN), so
 * the program reads the headers relative to the network header (bpf_skb_load_bytes_relative)
 * and truncates by cutting the payload's tail: the verdict is skb->len minus the bytes to lose.
 *
 * IPv4/UDP payloads starting with
 *   keep_marker      are kept whole;
 *   truncate_marker  are cut to their first truncate_to payload bytes (shorter ones are kept whole);
 * everything else (other first bytes, empty payloads, other protocols) is dropped.
 * Counters in .bss say how often each verdict was taken (kept whole, truncated, dropped).
 */
#include <stddef.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* Set by the test before loading. */
const volatile __u8 keep_marker = 'K';
const volatile __u8 truncate_marker = 'T';
const volatile __u32 truncate_to = 0;

__u64 kept = 0;
__u64 truncated = 0;
__u64 dropped = 0;

SEC("socket")
int udp_marker_filter(struct __sk_buff *skb)
{
	struct iphdr iph;
	struct udphdr udp;
	__u32 udp_off, payload_len;
	__u8 marker;

	if (skb->protocol != bpf_htons(ETH_P_IP))
		goto drop;
	if (bpf_skb_load_bytes_relative(skb, 0, &iph, sizeof(iph), BPF_HDR_START_NET))
		goto drop;
	if (iph.protocol != IPPROTO_UDP || iph.ihl < 5)
		goto drop;
	udp_off = iph.ihl * 4;
	if (bpf_skb_load_bytes_relative(skb, udp_off, &udp, sizeof(udp), BPF_HDR_START_NET))
		goto drop;
	payload_len = bpf_ntohs(udp.len);
	if (payload_len <= sizeof(udp))
		goto drop; /* no payload, no marker */
	payload_len -= sizeof(udp);
	if (bpf_skb_load_bytes_relative(skb, udp_off + sizeof(udp), &marker, 1, BPF_HDR_START_NET))
		goto drop;

	if (marker == truncate_marker && payload_len > truncate_to && payload_len <= skb->len) {
		__sync_fetch_and_add(&truncated, 1);
#ifdef BPFCONF_MUTANT /* keeps truncate_to + 1 payload bytes of a truncated datagram (off by one) */
		return skb->len - (payload_len - truncate_to) + 1;
#else
		return skb->len - (payload_len - truncate_to);
#endif
	}
	if (marker == keep_marker || marker == truncate_marker) {
		__sync_fetch_and_add(&kept, 1);
		return skb->len;
	}
drop:
	__sync_fetch_and_add(&dropped, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
