// SPDX-License-Identifier: GPL-2.0
/* lwt in / out / xmit: three light-weight tunnel programs, each attached to an IPv4 route with
 * iproute2 (`ip route add <prefix> encap bpf {in|out|xmit} pinned <file> ...`). The kernel runs
 * them only for packets that use that route; skb->data starts at the IP header (there is no L2
 * header yet, not even at xmit).
 *
 * - lwt_in_drop_port (`in`, run when a received packet is routed, before forwarding or local
 *   delivery) and lwt_out_drop_port (`out`, run when a locally generated packet is sent on the
 *   route) drop UDP to drop_port (BPF_DROP) and let everything else go on (BPF_OK).
 * - lwt_xmit_rewrite (`xmit`, run just before the neighbour output) rewrites the 4-byte payload
 *   prefix "ping" of UDP to rewrite_port into "pong", fixing the UDP checksum, and returns BPF_OK.
 *
 * Every program counts the packets it ran for (`*_seen`) and what it decided, so the test can
 * prove it ran for exactly the packets sent on its route.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* Set by the test before loading. */
const volatile __u16 drop_port = 0;
const volatile __u16 rewrite_port = 0;

__u64 in_seen = 0;
__u64 in_dropped = 0;
__u64 out_seen = 0;
__u64 out_dropped = 0;
__u64 xmit_seen = 0;
__u64 xmit_rewritten = 0;

/* "ping" and "pong" as a 4-byte load of the payload sees them. */
#define PING bpf_htonl(0x70696e67)
#define PONG bpf_htonl(0x706f6e67)

/* The UDP header of an IPv4/UDP packet starting at skb->data, or NULL. Sets *l4_off. */
static __always_inline struct udphdr *ipv4_udp(struct __sk_buff *skb, __u32 *l4_off)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *iph = data;
	struct udphdr *udp;
	__u32 ihl;

	if (skb->protocol != bpf_htons(ETH_P_IP))
		return NULL;
	if ((void *)(iph + 1) > data_end || iph->protocol != IPPROTO_UDP)
		return NULL;
	ihl = iph->ihl;
	if (ihl < 5)
		return NULL;
	udp = (void *)iph + ihl * 4;
	if ((void *)(udp + 1) > data_end)
		return NULL;
	*l4_off = ihl * 4;
	return udp;
}

SEC("lwt_in")
int lwt_in_drop_port(struct __sk_buff *skb)
{
	struct udphdr *udp;
	__u32 off;

	__sync_fetch_and_add(&in_seen, 1);
	udp = ipv4_udp(skb, &off);
	if (udp && udp->dest == bpf_htons(drop_port)) {
		__sync_fetch_and_add(&in_dropped, 1);
		return BPF_DROP;
	}
	return BPF_OK;
}

SEC("lwt_out")
int lwt_out_drop_port(struct __sk_buff *skb)
{
	struct udphdr *udp;
	__u32 off;

	__sync_fetch_and_add(&out_seen, 1);
	udp = ipv4_udp(skb, &off);
	if (udp && udp->dest == bpf_htons(drop_port)) {
		__sync_fetch_and_add(&out_dropped, 1);
		return BPF_DROP;
	}
	return BPF_OK;
}

SEC("lwt_xmit")
int lwt_xmit_rewrite(struct __sk_buff *skb)
{
	void *data_end = (void *)(long)skb->data_end;
	struct udphdr *udp;
	__u32 off, old, new = PONG;
	__u32 *payload;

	__sync_fetch_and_add(&xmit_seen, 1);
	udp = ipv4_udp(skb, &off);
	if (!udp || udp->dest != bpf_htons(rewrite_port))
		return BPF_OK;
	payload = (void *)(udp + 1);
	if ((void *)(payload + 1) > data_end)
		return BPF_OK;
	old = *payload;
	if (old != PING)
		return BPF_OK;
	/* The payload starts 8 bytes (an even number) into the UDP header, so the 4 bytes are two
	 * whole 16-bit words of the checksum. BPF_F_MARK_MANGLED_0: keep a zero (absent) checksum. */
#ifdef BPFCONF_MUTANT /* rewrites the payload without updating the UDP checksum */
	if (bpf_skb_store_bytes(skb, off + sizeof(*udp), &new, sizeof(new), 0))
		return BPF_DROP;
#else
	if (bpf_skb_store_bytes(skb, off + sizeof(*udp), &new, sizeof(new), 0) ||
	    bpf_l4_csum_replace(skb, off + offsetof(struct udphdr, check), old, new,
				BPF_F_MARK_MANGLED_0 | sizeof(new)))
		return BPF_DROP;
#endif
	__sync_fetch_and_add(&xmit_rewritten, 1);
	return BPF_OK;
}

char LICENSE[] SEC("license") = "GPL";
