// SPDX-License-Identifier: GPL-2.0
/*
 * bpf_snprintf (5.13), run by BPF_PROG_TEST_RUN as XDP: formats the values the test put in .bss
 * (a negative int, a string, a 64-bit hex, a zero-padded unsigned and a literal percent) into a
 * .bss buffer; the helper returns the formatted length including the NUL.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

__s32 number = 0;
__u64 wide = 0;
__u32 padded = 0;
char word[16] = {};
char out[96] = {};
long ret = 0;

SEC("xdp")
int format(struct xdp_md *ctx)
{
	ret = BPF_SNPRINTF(out, sizeof(out), "n=%d w=%s x=%llx p=%05u %%", number, word, wide,
			   padded);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
