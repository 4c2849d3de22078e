//! Entry point: parse flags, run the command, print the error chain once, exit non-zero.

use clap::parser::ValueSource;
use clap::FromArgMatches;
use sentence_mtl::cli::{usage_error, Cli, Command};
use sentence_mtl::commands;
use sentence_mtl::panic_report;
use sentence_mtl::precision::{self, Precision};
use sentence_mtl::train::interrupt::Interrupted;

fn run(cli: Cli) -> anyhow::Result<()> {
    // Every command starts without oneDNN; one that resolves bf16 turns it back on.
    precision::choose_cpu_kernels(Precision::Fp32);
    match &cli.command {
        Command::Encode(args) => commands::encode::run(args),
        Command::Train(args) => commands::train::run(args),
        Command::Predict(args) => commands::predict::run(args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Export(args) => commands::export::run(args),
    }
}

/// Keeps freed tensor memory in the heap for reuse instead of returning it to the OS after
/// every op: glibc otherwise mmaps and unmaps each large tensor, and the page faults cost a
/// few percent of a CPU training or encoding run (docs/benchmarks.md, "What we changed").
fn tune_allocator() {
    // SAFETY: mallopt only changes allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20); // glibc's maximum on 64-bit
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// Ends the process without running C++ static destructors: libtorch's deregister every
/// operator one by one, a large share of a short command's time (docs/benchmarks.md). By the
/// time this runs every file we write is complete and renamed into place; the standard
/// streams and C stdio are flushed first. (Tools that write their results from exit
/// handlers, such as coverage counters, would lose them.)
fn exit_now(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: fflush(NULL) flushes all C streams; _exit ends the process and never returns.
    unsafe {
        libc::fflush(std::ptr::null_mut());
        libc::_exit(code)
    }
}

/// clap's `Error::exit`, ending through [`exit_now`]. Errors are reported like every other
/// bad input: one `error:` line naming the flag, exit code 1 (`cli::usage_error`).
fn clap_exit(error: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if let Some(line) = usage_error::one_line(&error) {
        sentence_mtl::stderrln!("error: {}", with_rank(line));
        exit_now(1)
    }
    match error.kind() {
        // clap names a subcommand's version after it (`sentence-mtl-encode 0.1.0`).
        ErrorKind::DisplayVersion => {
            println!("sentence-mtl {}", Cli::definition().get_version().unwrap_or_default());
            exit_now(0)
        }
        // A bare `sentence-mtl` shows the help, and fails as any command without one would.
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = error.print();
            exit_now(1)
        }
        _ => {
            let _ = error.print();
            exit_now(error.exit_code())
        }
    }
}

/// Restores the default SIGPIPE action (Rust ignores it): `sentence-mtl eval --json | head`
/// then ends quietly when `head` stops reading, as `cat` would, instead of failing a write
/// and reporting it as an internal error. Files are written atomically, so none is left half
/// written.
fn die_quietly_on_closed_pipe() {
    // SAFETY: sets a signal disposition before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// In a data-parallel launch, `message` starting with the rank that failed, as the errors of
/// collectives already do: launchers interleave the ranks' output. A rank named inside the
/// message (under context such as `task 'x': `) moves to the front.
/// An error in the launch variables themselves still names the rank when `RANK` reads as one.
fn with_rank(message: String) -> String {
    use sentence_mtl::distributed::Launch;
    let rank = match Launch::from_env() {
        Ok(launch) => launch.map(|l| l.rank),
        Err(_) => Launch::rank_in_env(),
    };
    match rank {
        Some(rank) if !message.starts_with("rank ") => {
            let own = format!("rank {rank}: ");
            format!("{own}{}", message.replacen(&format!(": {own}"), ": ", 1))
        }
        _ => message,
    }
}

fn main() {
    tune_allocator();
    die_quietly_on_closed_pipe();
    // --help and --version also end in `clap_exit`, with code 0.
    let matches = Cli::definition().try_get_matches().unwrap_or_else(|e| clap_exit(e));
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| clap_exit(e));
    if matches!(cli.command, Command::Train(_)) {
        // A run's files matter more than its messages: it goes on when their reader is gone.
        sentence_mtl::console::keep_running_on_closed_pipe();
    }
    // `train --resume` must know which flags were typed, not just their values.
    if let (Command::Train(args), Some(("train", sub))) = (&mut cli.command, matches.subcommand()) {
        let definition = Cli::definition();
        let flags: Vec<String> = definition
            .find_subcommand("train")
            .map(|c| c.get_arguments().map(|a| a.get_id().to_string()).collect())
            .unwrap_or_default();
        args.explicit = sub
            .ids()
            .map(|id| id.to_string())
            .filter(|id| flags.contains(id) && sub.value_source(id) == Some(ValueSource::CommandLine))
            .collect();
    }
    // One line rather than a backtrace dump.
    std::panic::set_hook(Box::new(|info| {
        let message = panic_report::message(info.payload());
        let place = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        sentence_mtl::stderrln!("error: {}", with_rank(panic_report::one_line(message, &place)));
    }));
    let code = match std::panic::catch_unwind(|| run(cli)) {
        Ok(Ok(())) => 0,
        Ok(Err(error)) if error.downcast_ref::<Interrupted>().is_some() => {
            // The trainer has already said what it saved and how to resume.
            128 + error.downcast_ref::<Interrupted>().map(|i| i.signal).unwrap_or(2)
        }
        Ok(Err(error)) => {
            let chain: Vec<String> = error.chain().map(|e| e.to_string()).collect();
            sentence_mtl::stderrln!("error: {}", with_rank(chain.join(": ")));
            1
        }
        Err(payload) => panic_report::exit_code(panic_report::message(payload.as_ref())),
    };
    exit_now(code)
}
