//! Entry point: parse flags, run the command, print the error chain once, exit non-zero.

use std::process::ExitCode;

use clap::Parser;
use sentence_mtl::cli::{Cli, Command};
use sentence_mtl::commands;

fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Encode(args) => commands::encode::run(args),
        Command::Train(args) => commands::train::run(args),
        Command::Predict(args) => commands::predict::run(args),
        Command::Eval(args) => commands::eval::run(args),
    }
}

/// Keeps freed tensor memory in the heap for reuse instead of returning it to the OS after
/// every op: glibc otherwise mmaps and unmaps each large tensor, and the page faults cost
/// 4-6% of a CPU training or encoding run (measured; see README "Performance notes").
fn tune_allocator() {
    // SAFETY: mallopt only changes allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20); // glibc's maximum on 64-bit
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    // A panic is a bug, but the user still gets one line rather than a backtrace dump.
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("unknown panic");
        let first_line = message.lines().next().unwrap_or(message);
        let place = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("error: internal error{place}: {first_line} (please report this)");
    }));
    match std::panic::catch_unwind(|| run(cli)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(error)) => {
            let chain: Vec<String> = error.chain().map(|e| e.to_string()).collect();
            eprintln!("error: {}", chain.join(": "));
            ExitCode::FAILURE
        }
        Err(_) => ExitCode::from(101),
    }
}
