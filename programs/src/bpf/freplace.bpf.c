// SPDX-License-Identifier: GPL-2.0
/*
 * The target of an extension (freplace_ext.bpf.c): an XDP program whose verdict comes from a
 * global function. A global (non-static, not inlined) function is verified on its own and keeps
 * its own BTF, so a BPF_PROG_TYPE_EXT program can replace it while the caller stays loaded.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define ETH_HLEN 14

/* Passes any frame with a full Ethernet header. The answer depends on the frame, so clang keeps
 * the call instead of folding a constant return into the caller. */
__attribute__((noinline)) int verdict(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	return data + ETH_HLEN <= data_end ? XDP_PASS : XDP_ABORTED;
}

SEC("xdp")
int xdp_verdict(struct xdp_md *ctx)
{
	return verdict(ctx);
}

char _license[] SEC("license") = "GPL";
