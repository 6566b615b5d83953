// SPDX-License-Identifier: GPL-2.0
/*
 * xdp_link: two XDP programs for one interface, attached through a BPF link (BPF_LINK_CREATE with
 * BPF_XDP, Linux 5.9+) rather than netlink, the link's program then swapped (BPF_LINK_UPDATE).
 *
 * drop_port: IPv4/UDP to `port` is dropped (counted in `dropped`); everything else passes.
 * count_port: passes everything, counting IPv4/UDP to `port` in `passed`.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* Set by the test before loading. */
const volatile __u16 port = 0;

__u64 dropped = 0;
__u64 passed = 0;

/* Whether the frame is IPv4/UDP (options-free IP header) to `port`. */
static __always_inline int to_port(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = (void *)(eth + 1);
	struct udphdr *udp = (void *)(iph + 1);

	return (void *)(udp + 1) <= data_end && eth->h_proto == bpf_htons(ETH_P_IP) &&
#ifdef BPFCONF_MUTANT /* matches the UDP source port instead of the destination port */
	       iph->protocol == IPPROTO_UDP && iph->ihl == 5 && udp->source == bpf_htons(port);
#else
	       iph->protocol == IPPROTO_UDP && iph->ihl == 5 && udp->dest == bpf_htons(port);
#endif
}

SEC("xdp")
int drop_port(struct xdp_md *ctx)
{
	if (!to_port(ctx))
		return XDP_PASS;
	__sync_fetch_and_add(&dropped, 1);
	return XDP_DROP;
}

SEC("xdp")
int count_port(struct xdp_md *ctx)
{
	if (to_port(ctx))
		__sync_fetch_and_add(&passed, 1);
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
