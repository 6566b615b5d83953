// SPDX-License-Identifier: GPL-2.0
/*
 * BPF_MAP_TYPE_XSKMAP (4.18) as AF_XDP users load it: `to_socket` (XDP) redirects IPv4 UDP
 * datagrams to `xsk_port` to the AF_XDP socket in the slot of the receive queue
 * (bpf_redirect_map, XDP_PASS when the slot is empty); everything else passes. Counted in
 * `redirected`.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

const volatile __u16 xsk_port = 0;
__u64 redirected = 0;

SEC("xdp")
int to_socket(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = data + sizeof(*eth);
	struct udphdr *udp = (void *)iph + sizeof(*iph);
	long action;

	if ((void *)(udp + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) ||
	    iph->ihl != 5 || iph->protocol != IPPROTO_UDP || udp->dest != bpf_htons(xsk_port))
		return XDP_PASS;
	action = bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
#ifdef BPFCONF_MUTANT /* counts the datagrams that were not redirected (the comparison inverted) */
	if (action != XDP_REDIRECT)
#else
	if (action == XDP_REDIRECT)
#endif
		__sync_fetch_and_add(&redirected, 1);
	return action;
}

char LICENSE[] SEC("license") = "GPL";
