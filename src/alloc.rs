//! The global allocator: mimalloc, counting what each thread holds.
//!
//! mimalloc because a cycle is millions of small allocations (JSON maps, strings);
//! with glibc's allocator they were a third of the core's time, and freed memory
//! stayed with the process. The count is for the script sandbox: rhai limits the
//! size of strings, arrays and maps it can see, but not values captured in
//! closures, so a script call is also stopped when the memory its thread holds grows
//! past a cap (`script::MAX_CALL_MEMORY`).

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;

pub struct Counting;

thread_local! {
    /// Bytes allocated minus bytes freed on this thread (memory freed on another
    /// thread than it was allocated on skews both counts; a script call only
    /// looks at its own thread's growth while it runs).
    static HELD: Cell<i64> = const { Cell::new(0) };
    /// The most `HELD` reached since `log_memory` last looked.
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn count(delta: i64) {
    // `try_with`: a thread being torn down may still free memory.
    let _ = HELD.try_with(|h| {
        let now = h.get().wrapping_add(delta);
        h.set(now);
        if delta > 0 {
            let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
        }
    });
}

/// What this thread holds now, by the count above.
pub fn held() -> i64 {
    HELD.try_with(Cell::get).unwrap_or(0)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { mimalloc::MiMalloc.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as i64);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as i64);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) };
        count(-(layout.size() as i64));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size as i64 - layout.size() as i64);
        }
        p
    }
}

/// mimalloc's `mi_option_purge_delay`, which the crate does not name: in
/// `mimalloc.h` it comes just before `mi_option_use_numa_nodes` (the test below
/// checks its default: 1 s in mimalloc v3).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = libmimalloc_sys::mi_option_use_numa_nodes - 1;

/// How long mimalloc keeps freed memory before giving it back to the system, in
/// milliseconds.
///
/// A cycle frees and allocates hundreds of MB stage by stage; with mimalloc's
/// default second the process kept 40 MB more resident than it held at 100,000
/// users (the peak is what a small server has to have). Given back at once, every
/// page a request or a record freed was faulted in and zeroed again by the next:
/// about 7 % of the core thread's time (`perf`) went to zeroing pages. A
/// millisecond keeps the pages a stage reuses at once, and `give_back` returns
/// the rest when the stage ends.
pub const PURGE_AFTER_MS: i64 = 1;

/// Sets `PURGE_AFTER_MS`. Call before anything else allocates much.
pub fn return_freed_memory_soon() {
    // SAFETY: sets an option; mimalloc reads options atomically.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, PURGE_AFTER_MS) };
}

/// Gives back to the system every page freed and not yet returned, at the end of
/// a stage of a cycle: within a stage freed memory is kept a moment for reuse
/// (`PURGE_AFTER_MS`), but a stage that ends leaves hundreds of MB freed at a
/// million users, and the next stage's peak would come on top of them.
pub fn give_back() {
    // SAFETY: asks mimalloc to collect this thread's heap; no pointer is passed.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// Logs (at debug level) what the main thread holds and the process's peak
/// resident memory at a stage of the cycle: where memory goes at scale.
pub fn log_memory(stage: &str) {
    if !log::log_enabled!(log::Level::Debug) {
        return;
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let peak = PEAK.try_with(|p| p.replace(held())).unwrap_or(0);
    log::debug!(
        "memory {stage}: {:.1} MiB held (at most {:.1} MiB since the last stage), {:.1} MiB resident, peak {:.1} MiB",
        held() as f64 / 1_048_576.0,
        peak as f64 / 1_048_576.0,
        kib("VmRSS:") as f64 / 1024.0,
        kib("VmHWM:") as f64 / 1024.0
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // SAFETY: reads an option (no test sets it).
        let default = unsafe { libmimalloc_sys::mi_option_get(super::PURGE_DELAY) };
        assert_eq!(default, 1000, "not the purge delay, or its default moved");
    }
}
