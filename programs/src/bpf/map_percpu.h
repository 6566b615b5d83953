/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The value of the per-CPU map modules (map_percpu_*.bpf.c): 12 bytes, so a slot of the syscall
 * side's per-CPU layout (rounded up to 8 bytes) is 16 and its padding shows.
 */
#ifndef MAP_PERCPU_H
#define MAP_PERCPU_H

struct slot {
	__u32 cpu;	/* bpf_get_smp_processor_id() of the last run that counted */
	__u32 runs;	/* the runs on this slot's CPU */
	__u32 tag;	/* what user space stored; a program returns it from its CPU's slot */
};

/* One run on this CPU: its slot (only its own) counts it. */
static __always_inline void count_here(struct slot *s)
{
	s->cpu = bpf_get_smp_processor_id();
	s->runs++;
}

#endif
