//! The process state an activated service starts with: no signal blocked,
//! every signal at its default disposition, and no descriptor above 2.
//!
//! The daemon blocks SIGHUP, SIGINT, SIGTERM and SIGCHLD for its signalfd,
//! and a blocked mask survives fork and exec; so without a reset `kill` and
//! the shutdown SIGTERM would do nothing to a service, and its SIGCHLD
//! handling would break. Descriptors the daemon inherited without
//! close-on-exec would leak into every service; dbus-daemon closes them.
//! The same reset runs in busbar-launch-helper before it execs the service.

use std::os::fd::RawFd;

/// Marks every descriptor from `first` up close-on-exec, so an exec that
/// follows leaves only those below `first` open. Only async-signal-safe
/// calls, so it may run between fork and exec.
pub fn cloexec_from(first: RawFd) {
    let Ok(first) = libc::c_uint::try_from(first) else {
        return;
    };
    // SAFETY: close_range(2) with CLOSE_RANGE_CLOEXEC only sets a flag on
    // descriptors of this process; it reads and writes no memory of ours.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r == 0 {
        return;
    }
    // Kernels before 5.11: set the flag on each descriptor that can exist.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the valid, exclusively
    // borrowed `lim`.
    let max = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur.min(65536) as RawFd
    } else {
        1024
    };
    for fd in first as RawFd..max {
        // SAFETY: fcntl on a descriptor number that may or may not be open;
        // for a closed one it fails with EBADF and changes nothing.
        unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
}

/// Runs in the child between fork and exec (a `pre_exec` hook), or in
/// the launch helper before its exec: default dispositions for every signal
/// (exec resets caught ones, but ignored ones would survive), an empty
/// signal mask, and every descriptor above 2 closed on exec. Only
/// async-signal-safe calls.
pub fn reset_in_child() -> std::io::Result<()> {
    // The raw system call, because glibc's sigaction refuses the two
    // real-time signals it keeps for itself (32 and 33), which may still
    // have been ignored by whoever started the daemon and would stay
    // ignored in the service.
    let dfl = [0u64; 4];
    for sig in 1..=libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction reads a kernel `struct sigaction` from
        // `dfl`: 32 zero bytes, larger than the struct on every Linux
        // architecture, and all zeros mean SIG_DFL with no flags and an empty
        // mask; the old action is not asked for (null), and the last argument
        // is the kernel's sigset size (8 bytes).
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                dfl.as_ptr(),
                std::ptr::null_mut::<libc::c_void>(),
                8usize,
            );
        }
    }
    // SAFETY: an empty set, initialized by sigemptyset, installed as the
    // whole mask of this (single-threaded, just forked) process.
    let r = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut())
    };
    if r != 0 {
        return Err(std::io::Error::from_raw_os_error(r));
    }
    cloexec_from(3);
    Ok(())
}
