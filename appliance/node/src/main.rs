//! `keyrack`: the appliance's command line.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    keyrack_node::cli::main()
}
