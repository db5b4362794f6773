//! `shadowdiff-verdict`: see the library for what it does.

fn main() -> std::process::ExitCode {
    shadowdiff_runtime::launch("verdict", shadowdiff_verdict::run)
}
