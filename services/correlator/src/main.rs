//! `shadowdiff-correlator`: see the library for what it does.

fn main() -> std::process::ExitCode {
    shadowdiff_runtime::launch("correlator", shadowdiff_correlator::run)
}
