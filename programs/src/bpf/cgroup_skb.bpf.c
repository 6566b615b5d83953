// SPDX-License-Identifier: GPL-2.0
/*
 * cgroup_skb: a port filter and a byte counter on a cgroup v2 child.
 *
 * At both cgroup hooks the skb starts at the IP header (cgroup_skb programs never see the
 * Ethernet header), so skb->len is the length of the whole IP packet, IP header included.
 *
 * - egress: IPv4 UDP datagrams to `blocked_port` are dropped (verdict 0; the sending socket's
 *   sendmsg fails with EPERM) and counted in `egress_dropped`; everything else passes (1).
 * - ingress: every IPv4 UDP datagram to `counted_port` is counted in `ingress_packets`, and its
 *   skb->len added to `ingress_bytes`; everything passes.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* Set by the test before load. */
const volatile __u16 blocked_port = 0;
const volatile __u16 counted_port = 0;

__u64 egress_dropped = 0;
__u64 ingress_packets = 0;
__u64 ingress_bytes = 0;

/* The UDP destination port (host order) of an IPv4 packet, or 0 when it is not IPv4 UDP. */
static __always_inline __u16 udp_dest(struct __sk_buff *skb)
{
	struct iphdr ip;
	struct udphdr udp;

	if (skb->protocol != bpf_htons(ETH_P_IP))
		return 0;
	if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)))
		return 0;
	if (ip.version != 4 || ip.protocol != IPPROTO_UDP)
		return 0;
	if (bpf_skb_load_bytes(skb, ip.ihl * 4, &udp, sizeof(udp)))
		return 0;
	return bpf_ntohs(udp.dest);
}

SEC("cgroup_skb/egress")
int egress_block_port(struct __sk_buff *skb)
{
	if (udp_dest(skb) == blocked_port) {
#ifdef BPFCONF_MUTANT /* counts the blocked datagram but returns 1 (allow) instead of 0 */
		__sync_fetch_and_add(&egress_dropped, 1);
		return 1;
#else
		__sync_fetch_and_add(&egress_dropped, 1);
		return 0;
#endif
	}
	return 1;
}

SEC("cgroup_skb/ingress")
int ingress_count_bytes(struct __sk_buff *skb)
{
	if (udp_dest(skb) == counted_port) {
		__sync_fetch_and_add(&ingress_packets, 1);
		__sync_fetch_and_add(&ingress_bytes, skb->len);
	}
	return 1;
}

char _license[] SEC("license") = "GPL";
