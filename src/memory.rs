//! How the process allocates. glibc gives each thread that allocates while
//! another holds the lock an arena of its own, up to eight per core, and
//! hardly ever returns one's free pages to the system. GStreamer starts and
//! ends hundreds of streaming threads as rooms come and go, so the server's
//! memory grew with every room while nothing leaked (a churn of 4-person
//! MCU rooms: 118 MB to 571 MB in 30 cycles; `gridmix bench --churn`).
//! Two arenas, and handing freed pages back when a room closes, hold it
//! flat at a cost the bench measures.

/// Arenas the server's allocator may use.
pub const ARENAS: i32 = 2;

/// Limits glibc to `ARENAS` arenas unless the operator chose a number with
/// MALLOC_ARENA_MAX. Call before any thread starts: arenas made earlier stay.
pub fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    // SAFETY: mallopt only sets an allocator parameter; no thread exists yet.
    let ok = unsafe { libc::mallopt(libc::M_ARENA_MAX, ARENAS) };
    if ok != 1 {
        tracing::warn!(
            "mallopt(M_ARENA_MAX, {ARENAS}) was refused; memory may grow with room churn"
        );
    }
}

/// Hands the free pages of every arena back to the system (glibc keeps
/// them otherwise, for allocations that may never come). Takes a few
/// milliseconds; call when a room has closed, off the runtime's threads.
pub fn release_free_memory() {
    // SAFETY: malloc_trim only returns free memory; any thread may call it.
    unsafe {
        libc::malloc_trim(0);
    }
}
