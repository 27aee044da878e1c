//! The `outcore` command (see the `outcore_cli` library, which the Python package runs too).

fn main() {
    // Like any command-line tool, end quietly when the reader of stdout goes away
    // (`outcore log db | head`) instead of failing on the broken pipe.
    #[allow(unsafe_code)]
    // SAFETY: called first thing in main, before any other thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    std::process::exit(outcore_cli::run(std::env::args_os()));
}
