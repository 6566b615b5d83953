// SPDX-License-Identifier: GPL-2.0
/*
 * The target of an extension (freplace_ext.bpf.c): an XDP program whose verdict comes from a
 * global function. A global (non-static, not inlined) function is verified on its own and keeps
 * its own BTF, so a BPF_PROG_TYPE_EXT program can replace it while the caller stays loaded.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

__attribute__((noinline)) int verdict(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("xdp")
int xdp_verdict(struct xdp_md *ctx)
{
	return verdict(ctx);
}

char _license[] SEC("license") = "GPL";
