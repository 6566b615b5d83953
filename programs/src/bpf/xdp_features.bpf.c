// SPDX-License-Identifier: GPL-2.0
/* xdp_features: XDP programs that rewrite the frame and redirect it.
 *
 * xdp_rewrite, per IPv4 flow:
 *   - IPIP (IPv4 in IPv4): the outer IP header is stripped (bpf_xdp_adjust_head), the Ethernet
 *     header moved up to the inner packet; counted in `stripped`;
 *   - UDP to trim_port, with at least TRIM_BYTES of payload and ending the frame: the last
 *     TRIM_BYTES bytes are cut off (bpf_xdp_adjust_tail), IP total length (and checksum) and UDP
 *     length follow, the UDP checksum becomes 0 (none); counted in `trimmed`;
 *   - UDP to meta_port with at least META_LEN bytes of payload: the first META_LEN payload bytes
 *     are copied into the frame's metadata (bpf_xdp_adjust_meta); counted in `meta_set`;
 *   everything passes (XDP_PASS).
 * tc_read_meta (tc ingress on the same device): an skb carrying at least META_LEN bytes of XDP
 *   metadata gets skb->mark = the metadata's first u32; counted in `meta_read`.
 * xdp_redirect_dev: UDP to redirect_port gets the Ethernet addresses redirect_src_mac →
 *   redirect_dst_mac and is redirected to the device at key 0 of `tx_port` (a DEVMAP); counted in
 *   `redirected_dev`. Everything else passes.
 * xdp_redirect_cpu: UDP to cpu_port is redirected to CPU cpu_target through `cpus` (a CPUMAP);
 *   counted in `redirected_cpu`. Everything else passes.
 * cpumap_rewrite (the program of the CPUMAP entry, run on the target CPU): UDP to cpu_port is
 *   readdressed to cpu_rewritten_port (UDP checksum 0); counted in `cpumap_rewritten`.
 * xdp_pass: passes everything (a veth only takes redirected frames from its peer while the
 *   receiving veth runs a native XDP program).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* Payload bytes xdp_rewrite cuts off the end of a trim_port datagram. */
#define TRIM_BYTES 4
/* Bytes of metadata xdp_rewrite puts in front of a meta_port frame. */
#define META_LEN 4

/* Set by the test before loading. */
const volatile __u16 trim_port = 0;
const volatile __u16 meta_port = 0;
const volatile __u16 redirect_port = 0;
const volatile __u16 cpu_port = 0;
const volatile __u16 cpu_rewritten_port = 0;
const volatile __u32 cpu_target = 0;
const volatile __u8 redirect_src_mac[ETH_ALEN] = {};
const volatile __u8 redirect_dst_mac[ETH_ALEN] = {};

__u64 stripped = 0;
__u64 trimmed = 0;
__u64 meta_set = 0;
__u64 meta_read = 0;
__u64 redirected_dev = 0;
__u64 redirected_cpu = 0;
__u64 cpumap_rewritten = 0;

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} tx_port SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_CPUMAP);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, struct bpf_cpumap_val);
} cpus SEC(".maps");

/* The IPv4 header of an Ethernet frame, NULL for anything else. */
static __always_inline struct iphdr *ipv4(void *data, void *data_end)
{
	struct ethhdr *eth = data;
	struct iphdr *iph = (void *)(eth + 1);

	if ((void *)(iph + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) || iph->ihl < 5)
		return NULL;
	return iph;
}

/* The UDP header behind `iph`, NULL when it is not UDP or not whole. */
static __always_inline struct udphdr *udp_of(struct iphdr *iph, void *data_end)
{
	struct udphdr *udp = (void *)iph + iph->ihl * 4;

	if (iph->protocol != IPPROTO_UDP || (void *)(udp + 1) > data_end)
		return NULL;
	return udp;
}

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
	__u32 outer_len = outer->ihl * 4;
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

static __always_inline int set_meta(struct xdp_md *ctx, struct udphdr *udp, void *data_end)
{
	__u32 value;
	void *meta;

	if ((void *)(udp + 1) + META_LEN > data_end)
		return XDP_PASS;
	__builtin_memcpy(&value, udp + 1, META_LEN);
	if (bpf_xdp_adjust_meta(ctx, -META_LEN))
		return XDP_PASS;
	meta = (void *)(long)ctx->data_meta;
	if (meta + META_LEN > (void *)(long)ctx->data)
		return XDP_PASS;
	__builtin_memcpy(meta, &value, META_LEN);
	__sync_fetch_and_add(&meta_set, 1);
	return XDP_PASS;
}

SEC("xdp")
int xdp_rewrite(struct xdp_md *ctx)
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
	if (!udp)
		return XDP_PASS;
	if (udp->dest == bpf_htons(trim_port))
		return trim_tail(ctx, iph, udp, data_end);
	if (udp->dest == bpf_htons(meta_port))
		return set_meta(ctx, udp, data_end);
	return XDP_PASS;
}

SEC("tc")
int tc_read_meta(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *meta = (void *)(long)skb->data_meta;
	__u32 value;

	if (meta + META_LEN > data)
		return TC_ACT_OK;
	__builtin_memcpy(&value, meta, META_LEN);
	skb->mark = value;
	__sync_fetch_and_add(&meta_read, 1);
	return TC_ACT_OK;
}

SEC("xdp")
int xdp_redirect_dev(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *iph = ipv4(data, data_end);
	struct udphdr *udp;
	struct ethhdr *eth = data;

	if (!iph)
		return XDP_PASS;
	udp = udp_of(iph, data_end);
	if (!udp || udp->dest != bpf_htons(redirect_port))
		return XDP_PASS;
	/* Byte by byte: each read of the volatile constants is a load of what the test set. */
#pragma unroll
	for (int i = 0; i < ETH_ALEN; i++) {
		eth->h_dest[i] = redirect_dst_mac[i];
		eth->h_source[i] = redirect_src_mac[i];
	}
	__sync_fetch_and_add(&redirected_dev, 1);
	return bpf_redirect_map(&tx_port, 0, 0);
}

SEC("xdp")
int xdp_redirect_cpu(struct xdp_md *ctx)
{
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *iph = ipv4((void *)(long)ctx->data, data_end);
	struct udphdr *udp;

	if (!iph)
		return XDP_PASS;
	udp = udp_of(iph, data_end);
	if (!udp || udp->dest != bpf_htons(cpu_port))
		return XDP_PASS;
	__sync_fetch_and_add(&redirected_cpu, 1);
	return bpf_redirect_map(&cpus, cpu_target, 0);
}

SEC("xdp/cpumap")
int cpumap_rewrite(struct xdp_md *ctx)
{
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *iph = ipv4((void *)(long)ctx->data, data_end);
	struct udphdr *udp;

	if (!iph)
		return XDP_PASS;
	udp = udp_of(iph, data_end);
	if (!udp || udp->dest != bpf_htons(cpu_port))
		return XDP_PASS;
	udp->dest = bpf_htons(cpu_rewritten_port);
	udp->check = 0;
	__sync_fetch_and_add(&cpumap_rewritten, 1);
	return XDP_PASS;
}

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
