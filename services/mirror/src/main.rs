//! `shadowdiff-mirror`: see the library for what it does.

fn main() -> std::process::ExitCode {
    shadowdiff_runtime::launch("mirror", shadowdiff_mirror::run)
}
