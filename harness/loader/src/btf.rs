//! BTF of one's own for programs loaded from raw instructions: libbpf's BTF writer (`btf__new_empty`,
//! `btf__add_*`, `btf__raw_data`) behind a safe type, and [`FuncBtf`], the BTF that names a
//! program's functions (`func_info`; a program whose callback is an `ld_func` needs it).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

use libbpf_rs::libbpf_sys as sys;

use crate::prog;

/// A BTF object under construction (libbpf's `struct btf`), freed on drop.
struct Writer(NonNull<sys::btf>);

impl Writer {
    fn new() -> io::Result<Self> {
        // SAFETY: no arguments; the result is a new object this value owns, or NULL with errno.
        NonNull::new(unsafe { sys::btf__new_empty() })
            .map(Writer)
            .ok_or_else(io::Error::last_os_error)
    }

    /// Adds an integer type: its id.
    fn add_int(&mut self, name: &str, bytes: usize, encoding: u32) -> io::Result<u32> {
        let name = c_name(name)?;
        // SAFETY: a live object of ours and a NUL-terminated name libbpf copies.
        id(unsafe { sys::btf__add_int(self.0.as_ptr(), name.as_ptr(), bytes as _, encoding as _) })
    }

    /// Adds a function prototype returning type `ret`, without parameters: its id.
    fn add_func_proto(&mut self, ret: u32) -> io::Result<u32> {
        // SAFETY: a live object of ours.
        id(unsafe { sys::btf__add_func_proto(self.0.as_ptr(), ret as _) })
    }

    /// Adds a function of prototype `proto`: its id.
    fn add_func(
        &mut self,
        name: &str,
        linkage: sys::btf_func_linkage,
        proto: u32,
    ) -> io::Result<u32> {
        let name = c_name(name)?;
        // SAFETY: a live object of ours and a NUL-terminated name libbpf copies.
        id(unsafe { sys::btf__add_func(self.0.as_ptr(), name.as_ptr(), linkage, proto as _) })
    }

    /// Loads the BTF into the kernel (`BPF_BTF_LOAD`).
    fn load(&self) -> io::Result<OwnedFd> {
        let mut size = 0u32;
        // SAFETY: a live object of ours; the data stays valid until it is changed, which the
        // borrow of `self` prevents until the load below has read it.
        let data = unsafe { sys::btf__raw_data(self.0.as_ptr(), &mut size) };
        if data.is_null() {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `data` holds `size` bytes of BTF (see above); no options.
        let fd = unsafe { sys::bpf_btf_load(data, size as _, std::ptr::null_mut()) };
        if fd < 0 {
            return Err(io::Error::from_raw_os_error(-fd));
        }
        // SAFETY: a non-negative return is a new fd that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // SAFETY: ours, freed once.
        unsafe { sys::btf__free(self.0.as_ptr()) }
    }
}

fn c_name(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// A `btf__add_*` result: the new type's id, or `-errno`.
fn id(ret: i32) -> io::Result<u32> {
    u32::try_from(ret).map_err(|_| io::Error::from_raw_os_error(-ret))
}

/// A BTF object in the kernel that names a program's functions, and the `func_info` records
/// that point into it.
#[derive(Debug)]
pub struct FuncBtf {
    fd: OwnedFd,
    func_info: Vec<sys::bpf_func_info>,
}

impl FuncBtf {
    /// `functions` are (first slot, name), the main function at slot 0 first; each becomes a
    /// static `int name(void)`.
    pub fn load(functions: &[(u32, String)]) -> io::Result<Self> {
        let mut btf = Writer::new()?;
        let int = btf.add_int("int", 4, sys::BTF_INT_SIGNED)?;
        let proto = btf.add_func_proto(int)?;
        let func_info = functions
            .iter()
            .map(|(slot, name)| {
                Ok(sys::bpf_func_info {
                    insn_off: *slot,
                    type_id: btf.add_func(name, sys::BTF_FUNC_STATIC, proto)?,
                })
            })
            .collect::<io::Result<_>>()?;
        Ok(FuncBtf {
            fd: btf.load()?,
            func_info,
        })
    }

    /// The BTF and records as a load takes them.
    pub fn for_load(&self) -> prog::Btf<'_> {
        prog::Btf {
            fd: self.fd.as_fd(),
            func_info: &self.func_info,
            line_info: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_types_in_order() {
        let mut btf = Writer::new().unwrap();
        let int = btf.add_int("int", 4, sys::BTF_INT_SIGNED).unwrap();
        let proto = btf.add_func_proto(int).unwrap();
        let funcs = ["main", "cb"].map(|n| btf.add_func(n, sys::BTF_FUNC_STATIC, proto).unwrap());
        assert_eq!((int, proto, funcs), (1, 2, [3, 4]));
        assert!(btf.add_func("", sys::BTF_FUNC_STATIC, proto).is_err());
    }
}
