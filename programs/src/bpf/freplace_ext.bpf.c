// SPDX-License-Identifier: GPL-2.0
/*
 * An extension (BPF_PROG_TYPE_EXT) of freplace.bpf.c's global function `verdict`: the harness
 * names the loaded XDP program and the function as the attach target before load. It drops
 * every frame and counts the runs it replaced.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

__u32 replaced = 0;

SEC("freplace")
int drop_verdict(struct xdp_md *ctx)
{
#ifdef BPFCONF_MUTANT /* counts each run of the extension twice */
	replaced += 2;
#else
	replaced += 1;
#endif
	return XDP_DROP;
}

char _license[] SEC("license") = "GPL";
