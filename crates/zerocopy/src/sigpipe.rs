//! Keeping `SIGPIPE` from killing the process.
//!
//! `sendfile`, `splice`, `write` and `writev` to a socket or pipe whose
//! reader has gone raise `SIGPIPE`, whose default action kills the process.
//! Only `send`/`sendmsg` accept `MSG_NOSIGNAL`, so before the first transfer
//! the crate sets `SIGPIPE` to "ignore" **if and only if** it is still at its
//! default action; a handler installed by the application is left alone.
//! The failed call then returns `EPIPE`, which becomes
//! [`ZeroCopyError::PeerClosed`](crate::ZeroCopyError::PeerClosed). (Rust
//! binaries already start with `SIGPIPE` ignored; this covers libraries
//! loaded into C hosts and programs that reset it.)

use std::sync::Once;

static IGNORE: Once = Once::new();

/// Sets `SIGPIPE` to `SIG_IGN` unless the application installed its own
/// disposition. Idempotent and cheap after the first call; every transfer
/// in this crate calls it.
pub fn ignore_sigpipe() {
    IGNORE.call_once(|| {
        // SAFETY: `sigaction` with a null new action only reads the current
        // disposition into `old`, a properly sized, zero-initialised
        // `sigaction` struct that we own. Setting the disposition to
        // `SIG_IGN` installs no handler code, so no async-signal-safety
        // requirement arises; `sa_mask` is initialised by `sigemptyset`.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) != 0 {
                return;
            }
            if old.sa_sigaction != libc::SIG_DFL {
                return;
            }
            let mut new: libc::sigaction = std::mem::zeroed();
            new.sa_sigaction = libc::SIG_IGN;
            libc::sigemptyset(&mut new.sa_mask);
            libc::sigaction(libc::SIGPIPE, &new, std::ptr::null_mut());
        }
    });
}
