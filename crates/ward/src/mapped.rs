//! Files mapped read-only for `ward scan`, so that their bytes are searched where the page
//! cache holds them instead of being copied into a buffer first (the copy was a fifth of
//! `ward scan`'s time).
//!
//! A mapped file that shrinks while it is mapped turns reads of its lost pages into SIGBUS,
//! which would kill the process. A handler catches SIGBUS for addresses inside a live mapping
//! made here, puts a page of zeros in place of the lost one (the read is retried and sees
//! zeros) and marks the mapping damaged; the caller then scans the file again by reading it.
//! A SIGBUS anywhere else goes to whatever handled it before (Rust's own stack-overflow
//! report, or the default action).
//!
//! Bytes a writer changes while the file is mapped change under the scan (strictly, under a
//! `&[u8]`, which Rust assumes does not happen): the scanner may see old bytes, new bytes or
//! a mix, and the regex engine may even find its two passes disagree and panic. The caller
//! (`scan_cmd`) catches such a panic and reads the file instead; nothing here indexes memory
//! by a byte beyond a table of 256 or 65,536 entries.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Once;

/// Live mappings, one per scanning thread: `taken` reserves a slot; `span` is the mapping's
/// first page number (high 36 bits) and page count (low 28 bits) in one word, 0 when none,
/// so that the handler never pairs one mapping's start with another's length.
struct Slot {
    taken: AtomicBool,
    span: AtomicU64,
    damaged: AtomicBool,
}

const SLOTS: usize = 64;
const COUNT_BITS: u32 = 28;

#[allow(clippy::declare_interior_mutable_const)]
const FREE: Slot = Slot {
    taken: AtomicBool::new(false),
    span: AtomicU64::new(0),
    damaged: AtomicBool::new(false),
};

static LIVE: [Slot; SLOTS] = [FREE; SLOTS];
static PAGE: AtomicUsize = AtomicUsize::new(4096);
static INSTALL: Once = Once::new();
static INSTALLED: AtomicBool = AtomicBool::new(false);
/// The SIGBUS action before ours (written once, before ours is installed).
static mut PREVIOUS: std::mem::MaybeUninit<libc::sigaction> = std::mem::MaybeUninit::uninit();

unsafe extern "C" fn on_sigbus(
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
) {
    // The whole handler makes only async-signal-safe calls (mmap, sigaction) and uses atomics.
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    // Sent by a process (kill, sigqueue), not a fault: nothing to repair.
    // SAFETY: as above.
    let fault = unsafe { (*info).si_code } > 0;
    let page = PAGE.load(Ordering::Relaxed);
    for s in LIVE.iter().filter(|_| fault) {
        let span = s.span.load(Ordering::Acquire);
        if span == 0 {
            continue;
        }
        let start = (span >> COUNT_BITS) as usize * page;
        let len = (span & ((1 << COUNT_BITS) - 1)) as usize * page;
        if addr >= start && addr < start + len {
            let at = addr & !(page - 1);
            // SAFETY: replaces one page of a mapping this module made (a file that shrank
            // under it) with zeroes; MAP_FIXED over our own range only.
            let p = unsafe {
                libc::mmap(
                    at as *mut libc::c_void,
                    page,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                )
            };
            if p != libc::MAP_FAILED {
                s.damaged.store(true, Ordering::Release);
                return;
            }
        }
    }
    // Sent by a process: the default action (std's handler, the previous one, would put the
    // default back and return, losing the signal).
    if !fault {
        // SAFETY: sigaction with a zeroed struct set to SIG_DFL, then raise: both
        // async-signal-safe.
        unsafe {
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(libc::SIGBUS, &dfl, std::ptr::null_mut());
            libc::raise(libc::SIGBUS);
        }
        return;
    }
    // A fault not ours: the previous action. A handler is called; the default (or an ignored
    // SIGBUS, which for a fault cannot be ignored) is put back, and returning repeats it.
    // SAFETY: PREVIOUS was written once, before this handler was installed.
    let prev = unsafe { (*std::ptr::addr_of!(PREVIOUS)).assume_init_ref() };
    let h = prev.sa_sigaction;
    if h != libc::SIG_DFL && h != libc::SIG_IGN {
        if prev.sa_flags & libc::SA_SIGINFO != 0 {
            // SAFETY: with SA_SIGINFO the handler has this signature (sigaction(2)).
            let f: unsafe extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                unsafe { std::mem::transmute(h) };
            // SAFETY: calling the previous handler with the arguments we were given.
            unsafe { f(sig, info, ctx) };
        } else {
            // SAFETY: without SA_SIGINFO the handler takes the signal number only.
            let f: unsafe extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(h) };
            // SAFETY: calling the previous handler as it expects.
            unsafe { f(sig) };
        }
        return;
    }
    // SAFETY: sigaction with a zeroed struct set to SIG_DFL (async-signal-safe).
    unsafe {
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(libc::SIGBUS, &dfl, std::ptr::null_mut());
    }
}

fn install() -> bool {
    INSTALL.call_once(|| {
        // SAFETY: sysconf is a plain query; sigaction with a zeroed struct, our handler and an
        // empty mask; PREVIOUS is written here only, before the handler can run.
        unsafe {
            let page = libc::sysconf(libc::_SC_PAGESIZE);
            if page > 0 {
                PAGE.store(page as usize, Ordering::Relaxed);
            }
            let prev = &mut *std::ptr::addr_of_mut!(PREVIOUS);
            if libc::sigaction(libc::SIGBUS, std::ptr::null(), prev.as_mut_ptr()) != 0 {
                return;
            }
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_sigbus as *const () as usize;
            act.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut act.sa_mask);
            if libc::sigaction(libc::SIGBUS, &act, std::ptr::null_mut()) == 0 {
                INSTALLED.store(true, Ordering::Release);
            }
        }
    });
    INSTALLED.load(Ordering::Acquire)
}

/// A read-only mapping of a whole file.
pub(crate) struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
    slot: usize,
}

impl Mapped {
    /// Map the first `len` bytes of `file` (its size when asked). `None` when mapping is not
    /// possible here (no free slot, the handler could not be installed, `mmap` failed): the
    /// caller reads the file instead.
    pub(crate) fn map(file: &File, len: usize) -> Option<Mapped> {
        let page = PAGE.load(Ordering::Relaxed);
        if len == 0 || len.div_ceil(page) >= 1 << COUNT_BITS || !install() {
            return None;
        }
        let slot = LIVE.iter().position(|s| {
            s.taken
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        })?;
        // SAFETY: a fresh private read-only mapping of a file we hold open.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_POPULATE,
                file.as_raw_fd(),
                0,
            )
        };
        let s = &LIVE[slot];
        if ptr == libc::MAP_FAILED {
            s.taken.store(false, Ordering::Release);
            return None;
        }
        s.damaged.store(false, Ordering::Relaxed);
        let pages = len.div_ceil(page) as u64;
        s.span.store(
            ((ptr as usize / page) as u64) << COUNT_BITS | pages,
            Ordering::Release,
        );
        Some(Mapped { ptr, len, slot })
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes until drop (a lost page is replaced
        // by zeros, see the module's notes).
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }

    /// A page went away while mapped (the file shrank): what `bytes` showed is not the file.
    pub(crate) fn damaged(&self) -> bool {
        LIVE[self.slot].damaged.load(Ordering::Acquire)
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        let s = &LIVE[self.slot];
        s.span.store(0, Ordering::Release);
        // SAFETY: our own mapping, no longer referenced (bytes() borrows self).
        unsafe {
            libc::munmap(self.ptr, self.len);
        }
        s.taken.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_file_truncated_while_mapped_reads_as_zeros_and_is_marked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut f = File::create(&path).unwrap();
        f.write_all(&vec![b'a'; 64 << 10]).unwrap();
        let f = File::open(&path).unwrap();
        let m = Mapped::map(&f, 64 << 10).expect("mapped");
        assert!(m.bytes().iter().all(|&b| b == b'a'));
        assert!(!m.damaged());
        // Another handle cuts the file: the pages past the end go away.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        // Without the handler this read is a SIGBUS that kills the test binary.
        let sum: u64 = m.bytes().iter().map(|&b| b as u64).sum();
        assert!(
            sum < (64 << 10) * b'a' as u64,
            "the lost pages read as zeros"
        );
        assert!(m.damaged());
        drop(m);
        // The slot is free again and a new mapping starts undamaged.
        let mut g = File::create(dir.path().join("g")).unwrap();
        g.write_all(b"bytes").unwrap();
        let g = File::open(dir.path().join("g")).unwrap();
        let m = Mapped::map(&g, 5).unwrap();
        assert_eq!(m.bytes(), b"bytes");
        assert!(!m.damaged());
    }
}
