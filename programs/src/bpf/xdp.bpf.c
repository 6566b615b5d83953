// SPDX-License-Identifier: GPL-2.0
/* xdp: verdicts per UDP flow, for one end of a veth pair.
 *
 * xdp_udp_verdicts: IPv4/UDP to drop_port is dropped (XDP_DROP); IPv4/UDP to tx_port is bounced
 * back out of the interface it came in on (XDP_TX) with its Ethernet addresses, IP addresses and
 * UDP ports swapped (the IP and UDP checksums stay valid: both are sums in which the swapped
 * fields appear symmetrically); everything else passes (XDP_PASS). The `verdicts` array counts
 * the IPv4/UDP packets per verdict (index XDP_DROP, XDP_PASS, XDP_TX).
 * xdp_pass: passes everything. A veth only receives XDP_TX/redirected frames on its NAPI path,
 * which older kernels only set up while a native XDP program is attached: the test attaches this
 * one to the peer when it runs xdp_udp_verdicts in native mode.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* Set by the test before loading. */
const volatile __u16 drop_port = 0;
const volatile __u16 tx_port = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XDP_REDIRECT + 1);
	__type(key, __u32);
	__type(value, __u64);
} verdicts SEC(".maps");

static __always_inline int count(__u32 verdict)
{
	__u64 *n = bpf_map_lookup_elem(&verdicts, &verdict);

	if (n)
		__sync_fetch_and_add(n, 1);
	return verdict;
}

SEC("xdp")
int xdp_udp_verdicts(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	unsigned char mac[ETH_ALEN];
	struct iphdr *iph;
	struct udphdr *udp;
	__be32 addr;
	__be16 port;
	__u32 ihl;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	iph = (void *)(eth + 1);
	if ((void *)(iph + 1) > data_end || iph->protocol != IPPROTO_UDP)
		return XDP_PASS;
	ihl = iph->ihl;
	if (ihl < 5)
		return XDP_PASS;
	udp = (void *)iph + ihl * 4;
	if ((void *)(udp + 1) > data_end)
		return XDP_PASS;

#ifdef BPFCONF_MUTANT /* counts a datagram to drop_port as dropped but returns XDP_PASS */
	if (udp->dest == bpf_htons(drop_port)) {
		count(XDP_DROP);
		return XDP_PASS;
	}
#else
	if (udp->dest == bpf_htons(drop_port))
		return count(XDP_DROP);
#endif
	if (udp->dest != bpf_htons(tx_port))
		return count(XDP_PASS);

	__builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);
	addr = iph->saddr;
	iph->saddr = iph->daddr;
	iph->daddr = addr;
	port = udp->source;
	udp->source = udp->dest;
	udp->dest = port;
	return count(XDP_TX);
}

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
