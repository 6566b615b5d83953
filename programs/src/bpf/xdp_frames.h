/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The frame parsing of the xdp_adjust, xdp_metadata and xdp_redirect programs: the IPv4 header of
 * an Ethernet frame, the UDP header behind it (or only to one port), and the IPv4 header checksum
 * after a field changed.
 */
#ifndef BPFCONF_XDP_FRAMES_H
#define BPFCONF_XDP_FRAMES_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

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

/* The UDP header of an IPv4 frame to `port` (host order), NULL for any other frame. */
static __always_inline struct udphdr *udp_to(void *data, void *data_end, __u16 port)
{
	struct iphdr *iph = ipv4(data, data_end);
	struct udphdr *udp = iph ? udp_of(iph, data_end) : NULL;

	return udp && udp->dest == bpf_htons(port) ? udp : NULL;
}

#endif
