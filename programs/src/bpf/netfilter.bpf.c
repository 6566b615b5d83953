// SPDX-License-Identifier: GPL-2.0
/*
 * netfilter: a netfilter hook in BPF (BPF_PROG_TYPE_NETFILTER, attached with a netfilter link).
 *
 * At NF_INET_LOCAL_IN of an IPv4 namespace: UDP to `drop_port` is dropped (NF_DROP) and counted
 * in `dropped`; every other UDP datagram is accepted (NF_ACCEPT) and counted in `passed_udp`;
 * everything else is accepted uncounted. The context is the kernel's own struct bpf_nf_ctx, and
 * the packet is read through an skb dynptr (netfilter programs have no direct packet access).
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define NF_DROP 0
#define NF_ACCEPT 1

/* Kernel-internal types: field offsets are relocated against the running kernel's BTF. */
struct sk_buff;
struct bpf_nf_ctx {
	const void *state;
	struct sk_buff *skb;
} __attribute__((preserve_access_index));

extern int bpf_dynptr_from_skb(struct __sk_buff *skb, __u64 flags,
			       struct bpf_dynptr *ptr__uninit) __ksym;
extern void *bpf_dynptr_slice(const struct bpf_dynptr *ptr, __u32 offset, void *buffer__opt,
			      __u32 buffer__szk) __ksym;

/* Set by the test before load. */
const volatile __u16 drop_port = 0;

__u64 dropped = 0;
__u64 passed_udp = 0;

SEC("netfilter")
int drop_one_flow(struct bpf_nf_ctx *ctx)
{
	struct iphdr ip_buf, *iph;
	struct udphdr udp_buf, *udp;
	struct bpf_dynptr packet;

	if (bpf_dynptr_from_skb((struct __sk_buff *)ctx->skb, 0, &packet))
		return NF_ACCEPT;
	/* At LOCAL_IN the packet starts at its IPv4 header. */
	iph = bpf_dynptr_slice(&packet, 0, &ip_buf, sizeof(ip_buf));
	if (!iph || iph->version != 4 || iph->ihl < 5 || iph->protocol != IPPROTO_UDP)
		return NF_ACCEPT;
	udp = bpf_dynptr_slice(&packet, iph->ihl * 4, &udp_buf, sizeof(udp_buf));
	if (!udp)
		return NF_ACCEPT;
	if (udp->dest == bpf_htons(drop_port)) {
#ifdef BPFCONF_MUTANT /* counts the flow as dropped but returns NF_ACCEPT */
		__sync_fetch_and_add(&dropped, 1);
		return NF_ACCEPT;
#else
		__sync_fetch_and_add(&dropped, 1);
		return NF_DROP;
#endif
	}
	__sync_fetch_and_add(&passed_udp, 1);
	return NF_ACCEPT;
}

char _license[] SEC("license") = "GPL";
