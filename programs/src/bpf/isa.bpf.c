// SPDX-License-Identifier: GPL-2.0
/*
 * Instruction-set versions: build.rs compiles this file with -mcpu=v1, v2 (the default), v3 and
 * v4. The arithmetic is chosen so each version encodes it differently: sign-extended bytes
 * (shifts up to v3, movsx/ldsx in v4), byte swaps (be32 up to v3, bswap32 in v4), 32-bit
 * arithmetic and compares (64-bit up to v2, alu32/jmp32 in v3+), unsigned < compares (jlt, v2+).
 * Every version must compute the same value; tests/isa.rs computes it too.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("socket")
int mix(struct __sk_buff *skb)
{
	signed char buf[16];
	__u32 acc = 0x12345678;
	int i;

	if (bpf_skb_load_bytes(skb, 0, buf, sizeof(buf)) < 0)
		return 0;
#pragma clang loop unroll(full)
	for (i = 0; i < 16; i++) {
		long v = buf[i];

		acc = __builtin_bswap32(acc) ^ (__u32)(v * 31);
		if ((int)acc < 0)
			acc += 7;
		if (acc < 0x1000)
			acc |= 0x80;
	}
	return acc & 0x7fffffff;
}

char _license[] SEC("license") = "GPL";
