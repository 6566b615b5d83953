// SPDX-License-Identifier: GPL-2.0
/* sched_cls: two clsact classifiers (direct action) for a veth pair between two namespaces.
 *
 * tc_egress (the sender's veth, egress): UDP to drop_port is dropped (TC_ACT_SHOT); UDP to
 * dscp_port gets its IPv4 TOS byte rewritten to `tos` (DSCP marking, header checksum fixed with
 * bpf_l3_csum_replace); everything else passes untouched.
 * tc_ingress (the receiver's veth, ingress): UDP to mark_port gets skb->mark = `mark`.
 * Counters in .bss say how often each verdict was taken.
 */
#include <stddef.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* Set by the test before loading. */
const volatile __u16 drop_port = 0;
const volatile __u16 dscp_port = 0;
const volatile __u16 mark_port = 0;
const volatile __u8 tos = 0;
const volatile __u32 mark = 0;

__u64 dropped = 0;
__u64 tos_rewritten = 0;
__u64 marked = 0;

/* The IPv4 header of an Ethernet/IPv4/UDP frame and its UDP destination port (host order);
 * NULL for anything else. */
static __always_inline struct iphdr *ipv4_udp(struct __sk_buff *skb, __u16 *dport)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph;
	struct udphdr *udp;
	__u32 ihl;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return NULL;
	iph = (void *)(eth + 1);
	if ((void *)(iph + 1) > data_end || iph->protocol != IPPROTO_UDP)
		return NULL;
	ihl = iph->ihl;
	if (ihl < 5)
		return NULL;
	udp = (void *)iph + ihl * 4;
	if ((void *)(udp + 1) > data_end)
		return NULL;
	*dport = bpf_ntohs(udp->dest);
	return iph;
}

SEC("tc")
int tc_egress(struct __sk_buff *skb)
{
	struct iphdr *iph;
	__u16 dport, old_word, new_word;

	iph = ipv4_udp(skb, &dport);
	if (!iph)
		return TC_ACT_OK;
	if (dport == drop_port) {
		__sync_fetch_and_add(&dropped, 1);
		return TC_ACT_SHOT;
	}
	if (dport == dscp_port) {
		/* TOS shares a 16-bit checksum word with version/IHL: replace the word. */
		old_word = *(__u16 *)iph;
		iph->tos = tos;
		new_word = *(__u16 *)iph;
#ifdef BPFCONF_MUTANT /* rewrites the TOS without updating the IP header checksum */
		(void)old_word;
		(void)new_word;
#else
		if (bpf_l3_csum_replace(skb, ETH_HLEN + offsetof(struct iphdr, check), old_word,
					new_word, sizeof(new_word)))
			return TC_ACT_SHOT;
#endif
		__sync_fetch_and_add(&tos_rewritten, 1);
	}
	return TC_ACT_OK;
}

SEC("tc")
int tc_ingress(struct __sk_buff *skb)
{
	__u16 dport;

	if (ipv4_udp(skb, &dport) && dport == mark_port) {
		skb->mark = mark;
		__sync_fetch_and_add(&marked, 1);
	}
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
