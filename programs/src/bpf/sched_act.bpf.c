// SPDX-License-Identifier: GPL-2.0
/* sched_act: a tc action program (act_bpf) that drops UDP to drop_port (TC_ACT_SHOT) and lets
 * everything else go on (TC_ACT_OK), counting both.
 *
 * An action runs when its filter matches. match_all is that filter: a cls_bpf classifier in
 * classic (not direct-action) mode whose return value -1 means "match, default class id", so
 * cls_bpf then executes its actions. The test attaches both with iproute2's tc:
 * `tc filter add dev X ingress bpf object-pinned <match_all> action bpf object-pinned <act_drop_port>`.
 */
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

__u64 matched = 0;
__u64 udp_seen = 0;
__u64 dropped = 0;

SEC("tc")
int match_all(struct __sk_buff *skb)
{
#ifdef BPFCONF_MUTANT /* the classifier returns 0 (no match) instead of -1 (match, default class), so the action never runs */
	__sync_fetch_and_add(&matched, 1);
	return 0;
#else
	__sync_fetch_and_add(&matched, 1);
	return -1;
#endif
}

SEC("action")
int act_drop_port(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph;
	struct udphdr *udp;
	__u32 ihl;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	iph = (void *)(eth + 1);
	if ((void *)(iph + 1) > data_end || iph->protocol != IPPROTO_UDP)
		return TC_ACT_OK;
	ihl = iph->ihl;
	if (ihl < 5)
		return TC_ACT_OK;
	udp = (void *)iph + ihl * 4;
	if ((void *)(udp + 1) > data_end)
		return TC_ACT_OK;
	__sync_fetch_and_add(&udp_seen, 1);
	if (udp->dest == bpf_htons(drop_port)) {
		__sync_fetch_and_add(&dropped, 1);
		return TC_ACT_SHOT;
	}
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
