// SPDX-License-Identifier: GPL-2.0
/*
 * The skeleton workflow of the seeds (minimal.bpf.c): a tracepoint on sys_enter_write that reacts
 * only to the process whose pid user space wrote into the .bss variable `mpid`, before load or
 * (through the skeleton's mmap of .bss) while it runs. It prints as the seed does, and counts in
 * .bss so user space can read what it reported.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

int mpid = 0;
__u64 writes = 0;

SEC("tp/syscalls/sys_enter_write")
int handle_tp(void *ctx)
{
	int pid = bpf_get_current_pid_tgid() >> 32;

	if (pid != mpid)
		return 0;
	__sync_fetch_and_add(&writes, 1);
	bpf_printk("BPF triggered from PID %d.\n", pid);
	return 0;
}

char _license[] SEC("license") = "GPL";
