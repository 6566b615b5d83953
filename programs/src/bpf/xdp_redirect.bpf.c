// SPDX-License-Identifier: GPL-2.0
/* xdp_redirect: XDP programs that redirect frames through a DEVMAP and a CPUMAP.
 *
 * xdp_redirect_dev: UDP to redirect_port gets the Ethernet addresses redirect_src_mac →
 *   redirect_dst_mac and is redirected to the device at key 0 of `tx_port` (a DEVMAP); counted in
 *   `redirected_dev`. Everything else passes.
 * xdp_redirect_cpu: UDP to cpu_port is redirected to CPU cpu_target through `cpus` (a CPUMAP);
 *   counted in `redirected_cpu`. Everything else passes.
 * cpumap_rewrite (the program of the CPUMAP entry, run on the target CPU): UDP to cpu_port is
 *   readdressed to cpu_rewritten_port (UDP checksum 0); counted in `cpumap_rewritten`.
 * xdp_pass: passes everything (a veth only takes redirected frames from its peer while the
 *   receiving veth runs a native XDP program).
 */
#include "xdp_frames.h"

/* Set by the test before loading. */
const volatile __u16 redirect_port = 0;
const volatile __u16 cpu_port = 0;
const volatile __u16 cpu_rewritten_port = 0;
const volatile __u32 cpu_target = 0;
const volatile __u8 redirect_src_mac[ETH_ALEN] = {};
const volatile __u8 redirect_dst_mac[ETH_ALEN] = {};

__u64 redirected_dev = 0;
__u64 redirected_cpu = 0;
__u64 cpumap_rewritten = 0;

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} tx_port SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_CPUMAP);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, struct bpf_cpumap_val);
} cpus SEC(".maps");

SEC("xdp")
int xdp_redirect_dev(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	struct ethhdr *eth = data;

	if (!udp_to(data, (void *)(long)ctx->data_end, redirect_port))
		return XDP_PASS;
	/* Byte by byte: each read of the volatile constants is a load of what the test set. */
#pragma unroll
	for (int i = 0; i < ETH_ALEN; i++) {
#ifdef BPFCONF_MUTANT /* writes redirect_src_mac as the destination and redirect_dst_mac as the source (swapped) */
		eth->h_dest[i] = redirect_src_mac[i];
		eth->h_source[i] = redirect_dst_mac[i];
#else
		eth->h_dest[i] = redirect_dst_mac[i];
		eth->h_source[i] = redirect_src_mac[i];
#endif
	}
	__sync_fetch_and_add(&redirected_dev, 1);
	return bpf_redirect_map(&tx_port, 0, 0);
}

SEC("xdp")
int xdp_redirect_cpu(struct xdp_md *ctx)
{
	if (!udp_to((void *)(long)ctx->data, (void *)(long)ctx->data_end, cpu_port))
		return XDP_PASS;
	__sync_fetch_and_add(&redirected_cpu, 1);
	return bpf_redirect_map(&cpus, cpu_target, 0);
}

SEC("xdp/cpumap")
int cpumap_rewrite(struct xdp_md *ctx)
{
	struct udphdr *udp = udp_to((void *)(long)ctx->data, (void *)(long)ctx->data_end, cpu_port);

	if (!udp)
		return XDP_PASS;
	udp->dest = bpf_htons(cpu_rewritten_port);
	udp->check = 0;
	__sync_fetch_and_add(&cpumap_rewritten, 1);
	return XDP_PASS;
}

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
