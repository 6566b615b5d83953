// SPDX-License-Identifier: GPL-2.0
/*
 * xdp_devmap: an XDP program in a DEVMAP entry (BPF_XDP_DEVMAP, Linux 5.8+), run on each frame
 * redirected through that entry, after the redirect and before the target device transmits it.
 *
 * redirect_udp (on the receiving veth, native mode): IPv4/UDP to echo_port is redirected through
 * key 0 of `tx_ports` (counted in `redirected`); everything else passes.
 * echo_back (the program of `tx_ports`' entry): a payload starting with 'x' is dropped
 * (XDP_DROP: the frame is not transmitted; counted in `devmap_dropped`); any other frame is
 * turned into its own answer (Ethernet addresses, IP addresses and UDP ports swapped: the IP
 * checksum stays valid, the senders send without UDP checksums) and passed on (`devmap_echoed`).
 * It records the interfaces the frame came in on and leaves by (ingress_ifindex,
 * egress_ifindex: the latter readable only for this attach type).
 * xdp_pass: passes everything (a veth only takes redirected frames from its peer while it runs a
 * native XDP program).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* Set by the test before loading. */
const volatile __u16 echo_port = 0;

__u64 redirected = 0;
__u64 devmap_echoed = 0;
__u64 devmap_dropped = 0;
__u32 devmap_ingress_ifindex = 0;
__u32 devmap_egress_ifindex = 0;

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bpf_devmap_val);
} tx_ports SEC(".maps");

/* The UDP header of an IPv4/UDP frame (options-free IP header), NULL for anything else. */
static __always_inline struct udphdr *udp_of(void *data, void *data_end)
{
	struct ethhdr *eth = data;
	struct iphdr *iph = (void *)(eth + 1);
	struct udphdr *udp = (void *)(iph + 1);

	if ((void *)(udp + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) ||
	    iph->protocol != IPPROTO_UDP || iph->ihl != 5)
		return NULL;
	return udp;
}

SEC("xdp")
int redirect_udp(struct xdp_md *ctx)
{
	struct udphdr *udp = udp_of((void *)(long)ctx->data, (void *)(long)ctx->data_end);

	if (!udp || udp->dest != bpf_htons(echo_port))
		return XDP_PASS;
	__sync_fetch_and_add(&redirected, 1);
#ifdef BPFCONF_MUTANT /* redirects to devmap key 1 (the map has only key 0) */
	return bpf_redirect_map(&tx_ports, 1, 0);
#else
	return bpf_redirect_map(&tx_ports, 0, 0);
#endif
}

SEC("xdp/devmap")
int echo_back(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = (void *)(eth + 1);
	struct udphdr *udp = udp_of(data, data_end);
	unsigned char mac[ETH_ALEN];
	__be32 addr;
	__be16 port;
	char *payload;

	devmap_ingress_ifindex = ctx->ingress_ifindex;
	devmap_egress_ifindex = ctx->egress_ifindex;
	if (!udp)
		return XDP_PASS;
	payload = (void *)(udp + 1);
	if ((void *)(payload + 1) <= data_end && payload[0] == 'x') {
		__sync_fetch_and_add(&devmap_dropped, 1);
		return XDP_DROP;
	}
	__builtin_memcpy(mac, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, mac, ETH_ALEN);
	addr = iph->saddr;
	iph->saddr = iph->daddr;
	iph->daddr = addr;
	port = udp->source;
	udp->source = udp->dest;
	udp->dest = port;
	__sync_fetch_and_add(&devmap_echoed, 1);
	return XDP_PASS;
}

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
