//! `ward-launch`: enter the sandbox and run a command; a single-threaded process by
//! construction. `ward run` uses the same code through `ward __launch`; the tests drive this.
//!
//!   ward-launch --staging DIR [--ro PATH]... [--rw PATH]... [--cwd DIR] -- CMD [ARGS...]

fn main() {
    std::process::exit(ward_sandbox::launch::main_with_args(
        std::env::args().skip(1),
    ));
}
