//! Command-line verbs: `serve`, `demo`, `config check`, `policy check|eval|test`.

use std::process::ExitCode;

pub fn main() -> ExitCode {
    ExitCode::SUCCESS
}
