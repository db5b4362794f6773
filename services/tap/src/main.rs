//! `shadowdiff-tap`: see the library for what it does.

fn main() -> std::process::ExitCode {
    shadowdiff_runtime::launch("tap", shadowdiff_tap::run)
}
