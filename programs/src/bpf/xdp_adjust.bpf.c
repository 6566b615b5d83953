// SPDX-License-Identifier: GPL-2.0
/* xdp_adjust: an XDP program that moves the frame's head and tail.
 *
 * xdp_adjust, per IPv4 flow:
 *   - IPIP (IPv4 in IPv4): the outer IP header is stripped (bpf_xdp_adjust_head), the Ethernet
 *     header moved up to the inner packet; counted in `stripped`;
 *   - UDP to trim_port, with at least TRIM_BYTES of payload and ending the frame: the last
 *     TRIM_BYTES bytes are cut off (bpf_xdp_adjust_tail), IP total length (and checksum) and UDP
 *     length follow, the UDP checksum becomes 0 (none); counted in `trimmed`;
 *   everything passes (XDP_PASS).
 */
#include "xdp_frames.h"

/* Payload bytes xdp_adjust cuts off the end of a trim_port datagram. */
#define TRIM_BYTES 4

/* Set by the test before loading. */
const volatile __u16 trim_port = 0;

__u64 stripped = 0;
__u64 trimmed = 0;

/* The IPv4 header checksum `check` after a 16-bit field changed from `from` to `to` (RFC 1624;
 * the one's complement sum is the same in either byte order). */
static __always_inline __u16 csum_replace(__u16 check, __u16 from, __u16 to)
{
	__u32 sum = (__u16)~check + (__u16)~from + (__u32)to;

	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

static __always_inline int strip_outer_header(struct xdp_md *ctx, void *data,
					      struct iphdr *outer, void *data_end)
{
#ifdef BPFCONF_MUTANT /* strips sizeof(struct iphdr) bytes, ignoring the outer header's options (ihl) */
	__u32 outer_len = sizeof(struct iphdr);
#else
	__u32 outer_len = outer->ihl * 4;
#endif
	struct ethhdr eth;

	/* A whole inner IPv4 header follows. */
	if ((void *)outer + outer_len + sizeof(struct iphdr) > data_end)
		return XDP_PASS;
	__builtin_memcpy(&eth, data, ETH_HLEN);
	if (bpf_xdp_adjust_head(ctx, outer_len))
		return XDP_ABORTED;
	data = (void *)(long)ctx->data;
	if (data + ETH_HLEN > (void *)(long)ctx->data_end)
		return XDP_ABORTED;
	__builtin_memcpy(data, &eth, ETH_HLEN);
	__sync_fetch_and_add(&stripped, 1);
	return XDP_PASS;
}

static __always_inline int trim_tail(struct xdp_md *ctx, struct iphdr *iph, struct udphdr *udp,
				     void *data_end)
{
	__u16 tot_len = bpf_ntohs(iph->tot_len);
	__u16 udp_len = bpf_ntohs(udp->len);
	__be16 new_tot = bpf_htons(tot_len - TRIM_BYTES);

	/* Only a datagram that ends the frame (no link-layer padding behind it) and carries at
	 * least TRIM_BYTES of payload. Lengths compared as numbers: the 5.10 verifier does not
	 * bound a byte-swapped value, so it refuses one added to a packet pointer. */
	if (udp_len < sizeof(*udp) + TRIM_BYTES || data_end - (void *)iph != tot_len ||
	    data_end - (void *)udp != udp_len)
		return XDP_PASS;
	iph->check = csum_replace(iph->check, iph->tot_len, new_tot);
	iph->tot_len = new_tot;
	udp->len = bpf_htons(udp_len - TRIM_BYTES);
	udp->check = 0;
	if (bpf_xdp_adjust_tail(ctx, -TRIM_BYTES))
		return XDP_ABORTED;
	__sync_fetch_and_add(&trimmed, 1);
	return XDP_PASS;
}

SEC("xdp")
int xdp_adjust(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *iph = ipv4(data, data_end);
	struct udphdr *udp;

	if (!iph)
		return XDP_PASS;
	if (iph->protocol == IPPROTO_IPIP)
		return strip_outer_header(ctx, data, iph, data_end);
	udp = udp_of(iph, data_end);
	if (udp && udp->dest == bpf_htons(trim_port))
		return trim_tail(ctx, iph, udp, data_end);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
