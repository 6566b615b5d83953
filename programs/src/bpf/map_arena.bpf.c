// SPDX-License-Identifier: GPL-2.0
/*
 * BPF_MAP_TYPE_ARENA (6.9+) as programs use it: pages a program allocates (bpf_arena_alloc_pages)
 * and shares with user space, whose addresses are the same on both sides. A syscall program run
 * with BPF_PROG_TEST_RUN, the request in its context: `access` (one program, as a program must
 * reach the arena map itself to use arena pointers) does:
 *
 * - FILL: allocate a page, write WORDS words into it (value, value + 1, ...) and hand back its
 *   address in `addr`;
 * - READ: read the word at `addr` (where user space wrote) into `value`.
 *
 * Arena pointers (address space 1) need clang's __BPF_FEATURE_ADDR_SPACE_CAST and a JIT.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* 6.9's UAPI; Debian's multiarch headers are 6.1's. */
#define BPF_MAP_TYPE_ARENA 33
#define NUMA_NO_NODE (-1)
#define WORDS 4
#define FILL 1
#define READ 2

#define __arena __attribute__((address_space(1)))

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 4);	/* pages */
} arena SEC(".maps");

void __arena *bpf_arena_alloc_pages(void *map, void __arena *addr, __u32 page_cnt, int node_id,
				    __u64 flags) __ksym;

struct request {
	__u64 op;
	__u64 addr;
	__u64 value;
};

SEC("syscall")
int access(struct request *req)
{
	__u64 addr = req->addr, value = req->value;
	__u64 __arena *page;
	int i;

	if (req->op == FILL) {
		page = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
		if (!page)
			return -1;
#ifdef BPFCONF_MUTANT /* fills the words from index 1 (word 0 stays zero: off by one) */
		for (i = 1; i < WORDS; i++)
#else
		for (i = 0; i < WORDS; i++)
#endif
			page[i] = value + i;
		addr = (__u64)page;
	} else if (req->op == READ) {
		value = *(__u64 __arena *)addr;
	} else {
		return -1;
	}
	/* Both fields stored in one place: a store through a computed context offset (what the
	 * compiler makes of a store per case) is refused by verifiers before 7.x.
	 */
	req->addr = addr;
	req->value = value;
	return 0;
}

char _license[] SEC("license") = "GPL";
