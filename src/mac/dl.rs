//! Loading a shared library at run time (dlopen/dlsym), so that busbar
//! runs, unchanged and without the library, where no security module is
//! active: libselinux and libapparmor are opened only when the kernel has
//! the module (see the README's dependency section).

use std::ffi::{c_void, CStr};

/// An open shared library; never closed (its functions stay callable for
/// the life of the process, and libselinux keeps callbacks into busbar).
#[derive(Debug)]
pub struct Lib {
    handle: *mut c_void,
}

impl Lib {
    /// Opens `name` (a soname such as `libselinux.so.1`); None when it is
    /// not installed.
    pub fn open(name: &CStr) -> Option<Lib> {
        // SAFETY: `name` is a NUL-terminated string that outlives the
        // call; dlopen has no other preconditions. Loading runs the
        // library's constructors, which for libselinux and libapparmor
        // only initialise their own globals.
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        (!handle.is_null()).then_some(Lib { handle })
    }

    /// The address of symbol `name`, or None.
    pub fn sym(&self, name: &CStr) -> Option<*mut c_void> {
        // SAFETY: `handle` came from a successful dlopen and is never
        // closed; `name` is NUL-terminated and outlives the call.
        let p = unsafe { libc::dlsym(self.handle, name.as_ptr()) };
        (!p.is_null()).then_some(p)
    }
}

/// Resolves symbols into a struct of typed function pointers:
/// `load_fns!(lib, Struct { field: "symbol" as fn(..) -> .., ... })`.
/// Every symbol must exist, or the whole struct is None.
macro_rules! load_fns {
    ($lib:expr, $ty:ident { $($field:ident : $sym:literal),* $(,)? }) => {{
        let lib = $lib;
        (|| {
            Some($ty {
                $($field: {
                    let p = lib.sym(match std::ffi::CStr::from_bytes_with_nul(concat!($sym, "\0").as_bytes()) {
                        Ok(c) => c,
                        Err(_) => return None,
                    })?;
                    // SAFETY: `p` is the address dlsym gave for the
                    // symbol `$sym` of the library, whose C prototype the
                    // field's type spells out (checked against the
                    // library's header when the field was written);
                    // function and data pointers have the same size on
                    // every platform busbar supports (POSIX requires it
                    // for dlsym).
                    #[allow(clippy::missing_transmute_annotations)]
                    let f = unsafe { std::mem::transmute::<*mut std::ffi::c_void, _>(p) };
                    f
                },)*
            })
        })()
    }};
}
pub(crate) use load_fns;
