// SPDX-License-Identifier: GPL-2.0
/*
 * The Hello World of "Linux Observability with BPF", chapter 2, as the book writes it: on every
 * execve, print a line to the kernel's trace pipe. bpf_trace_printk is GPL-only; build.rs also
 * compiles this file with BPFCONF_LICENSE="Proprietary", which the kernel must refuse.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#ifndef BPFCONF_LICENSE
#define BPFCONF_LICENSE "GPL"
#endif

SEC("tracepoint/syscalls/sys_enter_execve")
int bpf_prog(void *ctx)
{
	char msg[] = "Hello, BPF World!";

	bpf_trace_printk(msg, sizeof(msg));
	return 0;
}

char _license[] SEC("license") = BPFCONF_LICENSE;
