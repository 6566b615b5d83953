// SPDX-License-Identifier: GPL-2.0
/*
 * BPF_MAP_TYPE_DEVMAP_HASH (5.4): devices under sparse keys. `bounce` (XDP) looks up the UDP
 * destination port of an IPv4 datagram as the key: where there is a device, the datagram goes back
 * to its sender (Ethernet and IP addresses and UDP ports swapped, so no checksum changes) out of
 * that device (bpf_redirect_map); where there is none it passes to the stack untouched. Counted
 * in `bounced` and `passed`. `pass` lets a veth take the frames its peer redirects to it.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u32);
} ports SEC(".maps");

__u64 bounced = 0;
__u64 passed = 0;

static void swap(struct ethhdr *eth, struct iphdr *iph, struct udphdr *udp)
{
	__u8 mac[ETH_ALEN];
	__u32 addr = iph->saddr;
	__u16 port = udp->source;

	__builtin_memcpy(mac, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, mac, ETH_ALEN);
	iph->saddr = iph->daddr;
	iph->daddr = addr;
	udp->source = udp->dest;
	udp->dest = port;
}

SEC("xdp")
int bounce(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = data + sizeof(*eth);
	struct udphdr *udp = (void *)iph + sizeof(*iph);
	long action;

	if ((void *)(udp + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) ||
	    iph->ihl != 5 || iph->protocol != IPPROTO_UDP)
		return XDP_PASS;
	swap(eth, iph, udp);
	/* The port the datagram was sent to, now its source, is the key. */
#ifdef BPFCONF_MUTANT /* keys the redirect on the swapped header's destination (the sender's port) instead of the port the datagram was sent to */
	action = bpf_redirect_map(&ports, bpf_ntohs(udp->dest), XDP_PASS);
#else
	action = bpf_redirect_map(&ports, bpf_ntohs(udp->source), XDP_PASS);
#endif
	if (action == XDP_REDIRECT) {
		__sync_fetch_and_add(&bounced, 1);
		return XDP_REDIRECT;
	}
	swap(eth, iph, udp);
	__sync_fetch_and_add(&passed, 1);
	return XDP_PASS;
}

SEC("xdp")
int pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
