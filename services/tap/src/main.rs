//! `shadowdiff-tap`: see the library for what it does.

// The tap allocates small buffers per exchange on many threads; mimalloc's per-thread
// heaps cut the allocator's share of CPU several-fold against glibc's (see README).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    shadowdiff_runtime::launch("tap", shadowdiff_tap::run)
}
