/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The session kfuncs of the programs that run at both ends of a call (kprobe.session 6.10+,
 * uprobe.session 6.13+, fsession 7.0+): whether this run is the return, and the u64 the entry
 * run left for the return run of the same call. 7.0 gave both a context argument
 * (8fe4dc4f6456 bpf: change prototype of bpf_session_{cookie,is_return}); libbpf resolves each
 * flavour (the part before `___`) against the kernel's BTF and leaves the one whose prototype
 * does not match unresolved, so bpf_ksym_exists picks the one this kernel has.
 */
#ifndef BPFCONF_SESSION_H
#define BPFCONF_SESSION_H

#include <bpf/bpf_helpers.h>

extern _Bool bpf_session_is_return___ctx(void *ctx) __ksym __weak;
extern __u64 *bpf_session_cookie___ctx(void *ctx) __ksym __weak;
extern _Bool bpf_session_is_return___noctx(void) __ksym __weak;
extern __u64 *bpf_session_cookie___noctx(void) __ksym __weak;

/*
 * Sets *is_return and *cookie for the run of `ctx`; -1 when the kernel has neither flavour (the
 * program then records that and does nothing else).
 */
static __always_inline int session(void *ctx, _Bool *is_return, __u64 **cookie)
{
	if (bpf_ksym_exists(bpf_session_is_return___ctx) &&
	    bpf_ksym_exists(bpf_session_cookie___ctx)) {
		*is_return = bpf_session_is_return___ctx(ctx);
		*cookie = bpf_session_cookie___ctx(ctx);
		return 0;
	}
	if (bpf_ksym_exists(bpf_session_is_return___noctx) &&
	    bpf_ksym_exists(bpf_session_cookie___noctx)) {
		*is_return = bpf_session_is_return___noctx();
		*cookie = bpf_session_cookie___noctx();
		return 0;
	}
	return -1;
}

#endif
