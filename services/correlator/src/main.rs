//! `shadowdiff-correlator`: see the library for what it does.

// Decoding events and parsing bodies allocate many small values per exchange; with glibc's
// allocator that was 40% of the correlator's CPU (deploy/bench/results-correlator.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    shadowdiff_runtime::launch("correlator", shadowdiff_correlator::run)
}
