//! The `eddy` binary: `eddy serve` runs the broker; the other commands are clients of it.
#![forbid(unsafe_code)]

mod cli;

fn main() -> std::process::ExitCode {
    match cli::run(std::env::args_os().skip(1).collect()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line on stderr, as the CLI promises; causes joined with ": ".
            let msg = format!("{e:#}").replace('\n', " ");
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("eddy: {msg}\n").as_bytes(),
            );
            std::process::ExitCode::FAILURE
        }
    }
}
