// SPDX-License-Identifier: GPL-2.0
/* flow_dissector: a BPF flow dissector for IPv4 and IPv6 with TCP and UDP ports.
 *
 * The kernel calls it instead of its own dissector for packets of the namespace it is attached
 * to, with skb->flow_keys pre-set (n_proto = the EtherType, nhoff = thoff = the offset of the
 * network header) and expects the keys filled in: addr_proto, the addresses, ip_proto, thoff (the
 * transport header's offset), sport/dport (network order), the fragment bits and the IPv6 flow
 * label. It returns BPF_OK, or BPF_DROP for what it cannot dissect: an EtherType other than IPv4
 * and IPv6, a truncated or malformed IP header, a truncated TCP/UDP header, a TCP data offset
 * below 5. Other transport protocols (ICMP, IPv6 extension headers, ...) are dissected down to
 * addresses and ip_proto, without ports.
 *
 * Every call counts in `dissections`; dissected TCP/UDP packets count per destination port
 * (host order) in the map `dport_dissections`, so a test sees which packets the kernel handed it.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define IP_MF 0x2000
#define IP_OFFSET 0x1fff
#define IPV6_FLOWLABEL_MASK 0x000fffff

__u64 dissections = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} dport_dissections SEC(".maps");

/* A pointer to `len` bytes at offset `off`: into the packet when they are in its linear part,
 * else copied into `buf` (bpf_skb_load_bytes); NULL when the packet is shorter. */
static __always_inline void *header(struct __sk_buff *skb, __u16 off, __u16 len, void *buf)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	void *p;

	/* Bounds the variable offset, so the verifier accepts data + off + len. */
	if (off > 0xffff - len)
		return NULL;
	p = data + off;
	if (p + len <= data_end)
		return p;
	if (bpf_skb_load_bytes(skb, off, buf, len))
		return NULL;
	return buf;
}

static __always_inline void count_dport(__be16 dport)
{
	__u32 key = bpf_ntohs(dport);
	__u64 one = 1, *count;

	count = bpf_map_lookup_elem(&dport_dissections, &key);
	if (count)
		__sync_fetch_and_add(count, 1);
	else
		bpf_map_update_elem(&dport_dissections, &key, &one, BPF_NOEXIST);
}

static __always_inline int dissect_ports(struct __sk_buff *skb, struct bpf_flow_keys *keys,
					 __u8 proto)
{
	struct tcphdr _tcp, *tcp;
	struct udphdr _udp, *udp;

	switch (proto) {
	case IPPROTO_TCP:
		tcp = header(skb, keys->thoff, sizeof(_tcp), &_tcp);
		if (!tcp || tcp->doff < 5)
			return BPF_DROP;
		keys->sport = tcp->source;
		keys->dport = tcp->dest;
		break;
	case IPPROTO_UDP:
		udp = header(skb, keys->thoff, sizeof(_udp), &_udp);
		if (!udp)
			return BPF_DROP;
#ifdef BPFCONF_MUTANT /* swaps the UDP source and destination ports in the flow keys */
		keys->sport = udp->dest;
		keys->dport = udp->source;
#else
		keys->sport = udp->source;
		keys->dport = udp->dest;
#endif
		break;
	default:
		return BPF_OK;
	}
	count_dport(keys->dport);
	return BPF_OK;
}

static __always_inline int dissect_ipv4(struct __sk_buff *skb, struct bpf_flow_keys *keys)
{
	struct iphdr _iph, *iph;

	iph = header(skb, keys->nhoff, sizeof(_iph), &_iph);
	if (!iph || iph->version != 4 || iph->ihl < 5)
		return BPF_DROP;
	keys->addr_proto = ETH_P_IP;
	keys->ipv4_src = iph->saddr;
	keys->ipv4_dst = iph->daddr;
	keys->ip_proto = iph->protocol;
	keys->thoff = keys->nhoff + iph->ihl * 4;
	if (iph->frag_off & bpf_htons(IP_MF | IP_OFFSET)) {
		keys->is_frag = 1;
		/* Later fragments carry no transport header. */
		if (iph->frag_off & bpf_htons(IP_OFFSET))
			return BPF_OK;
		keys->is_first_frag = 1;
		if (!(keys->flags & BPF_FLOW_DISSECTOR_F_PARSE_1ST_FRAG))
			return BPF_OK;
	}
	return dissect_ports(skb, keys, iph->protocol);
}

static __always_inline int dissect_ipv6(struct __sk_buff *skb, struct bpf_flow_keys *keys)
{
	struct ipv6hdr _ip6h, *ip6h;

	ip6h = header(skb, keys->nhoff, sizeof(_ip6h), &_ip6h);
	if (!ip6h || ip6h->version != 6)
		return BPF_DROP;
	keys->addr_proto = ETH_P_IPV6;
	__builtin_memcpy(keys->ipv6_src, &ip6h->saddr, sizeof(ip6h->saddr));
	__builtin_memcpy(keys->ipv6_dst, &ip6h->daddr, sizeof(ip6h->daddr));
	keys->ip_proto = ip6h->nexthdr;
	keys->flow_label = *(__be32 *)ip6h & bpf_htonl(IPV6_FLOWLABEL_MASK);
	keys->thoff = keys->nhoff + sizeof(struct ipv6hdr);
	if (keys->flags & BPF_FLOW_DISSECTOR_F_STOP_AT_FLOW_LABEL)
		return BPF_OK;
	return dissect_ports(skb, keys, ip6h->nexthdr);
}

SEC("flow_dissector")
int dissect(struct __sk_buff *skb)
{
	struct bpf_flow_keys *keys = skb->flow_keys;

	__sync_fetch_and_add(&dissections, 1);
	if (keys->n_proto == bpf_htons(ETH_P_IP))
		return dissect_ipv4(skb, keys);
	if (keys->n_proto == bpf_htons(ETH_P_IPV6))
		return dissect_ipv6(skb, keys);
	return BPF_DROP;
}

char LICENSE[] SEC("license") = "GPL";
