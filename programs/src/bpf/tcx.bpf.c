// SPDX-License-Identifier: GPL-2.0
/*
 * tcx: classifiers attached through tcx links (BPF_TCX_INGRESS / BPF_TCX_EGRESS), several per
 * hook, run in the order their links were placed (before/after another link).
 *
 * tcx_drop (egress): UDP to drop_port is dropped (TCX_DROP), counted in `dropped`; everything
 * else goes on to the next program (TCX_NEXT).
 * mark_a (ingress): UDP to mark_port or order_port gets skb->mark = mark_a_value, counted in
 * `marked_a`; TCX_NEXT.
 * mark_b (ingress): UDP to order_port gets skb->mark = mark_b_value, counted in `marked_b`;
 * TCX_NEXT. On order_port the program that runs last decides the mark.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* enum tcx_action_base (UAPI 6.6; the build headers may predate it). */
#define TCX_NEXT -1
#define TCX_DROP 2

/* Set by the test before load. */
const volatile __u16 drop_port = 0;
const volatile __u16 mark_port = 0;
const volatile __u16 order_port = 0;
const volatile __u32 mark_a_value = 0;
const volatile __u32 mark_b_value = 0;

__u64 dropped = 0;
__u64 marked_a = 0;
__u64 marked_b = 0;

/* The UDP destination port (host order) of an Ethernet/IPv4/UDP frame, 0 for anything else. */
static __always_inline __u16 udp_dport(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph;
	struct udphdr *udp;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return 0;
	iph = (void *)(eth + 1);
	if ((void *)(iph + 1) > data_end || iph->protocol != IPPROTO_UDP || iph->ihl < 5)
		return 0;
	udp = (void *)iph + iph->ihl * 4;
	if ((void *)(udp + 1) > data_end)
		return 0;
	return bpf_ntohs(udp->dest);
}

SEC("tcx/egress")
int tcx_drop(struct __sk_buff *skb)
{
	if (udp_dport(skb) == drop_port) {
		__sync_fetch_and_add(&dropped, 1);
		return TCX_DROP;
	}
	return TCX_NEXT;
}

SEC("tcx/ingress")
int mark_a(struct __sk_buff *skb)
{
	__u16 dport = udp_dport(skb);

	if (dport && (dport == mark_port || dport == order_port)) {
		skb->mark = mark_a_value;
#ifdef BPFCONF_MUTANT /* mark_a returns TCX_PASS (0: ends the chain) instead of TCX_NEXT, so mark_b never runs */
		__sync_fetch_and_add(&marked_a, 1);
	}
	return 0;
#else
		__sync_fetch_and_add(&marked_a, 1);
	}
	return TCX_NEXT;
#endif
}

SEC("tcx/ingress")
int mark_b(struct __sk_buff *skb)
{
	__u16 dport = udp_dport(skb);

	if (dport && dport == order_port) {
		skb->mark = mark_b_value;
		__sync_fetch_and_add(&marked_b, 1);
	}
	return TCX_NEXT;
}

char LICENSE[] SEC("license") = "GPL";
