//! `shadowctl`: see the library for what it does.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = shadowctl::cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("shadowctl: cannot start: {error}");
            return ExitCode::from(shadowctl::exit::UNAVAILABLE);
        }
    };
    match runtime.block_on(shadowctl::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            anstream::eprintln!("shadowctl: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
