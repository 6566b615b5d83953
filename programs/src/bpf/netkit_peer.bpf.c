// SPDX-License-Identifier: GPL-2.0
/*
 * netkit_peer: the peer program of a netkit pair (BPF_NETKIT_PEER link, Linux 6.7+, created on
 * the primary device: the primary manages both sides' programs), run for every packet the peer
 * device transmits, before it enters the primary.
 *
 * peer_verdict: IPv4/UDP to drop_port is dropped (NETKIT_DROP), counted in `dropped`; other
 * IPv4/UDP passes (NETKIT_PASS), counted in `passed`; everything else passes uncounted.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* enum netkit_action (UAPI 6.7; the build headers predate it). */
#define NETKIT_PASS 0
#define NETKIT_DROP 2

/* Set by the test before loading. */
const volatile __u16 drop_port = 0;

__u64 dropped = 0;
__u64 passed = 0;

SEC("netkit/peer")
int peer_verdict(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = (void *)(eth + 1);
	struct udphdr *udp = (void *)(iph + 1);

	/* The device's L2 header is there in L3 mode too (zero addresses). */
	if ((void *)(udp + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) ||
	    iph->protocol != IPPROTO_UDP || iph->ihl != 5)
		return NETKIT_PASS;
	if (udp->dest == bpf_htons(drop_port)) {
#ifdef BPFCONF_MUTANT /* counts the datagram as dropped but returns NETKIT_PASS */
		__sync_fetch_and_add(&dropped, 1);
		return NETKIT_PASS;
#else
		__sync_fetch_and_add(&dropped, 1);
		return NETKIT_DROP;
#endif
	}
	__sync_fetch_and_add(&passed, 1);
	return NETKIT_PASS;
}

char _license[] SEC("license") = "GPL";
