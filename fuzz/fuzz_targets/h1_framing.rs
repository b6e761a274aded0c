//! The listener's HTTP/1.1 smuggling guard: any byte stream, in any split, gives
//! the same verdict, and never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::gateway::listener::{Scan, Scanner};

fn run<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Scan {
    let mut scanner = Scanner::new(16 * 1024, 100);
    for part in parts {
        match scanner.feed(part) {
            Scan::Continue => {}
            verdict => return verdict,
        }
    }
    Scan::Continue
}

fuzz_target!(|data: &[u8]| {
    let whole = run([data]);
    let bytewise = run(data.chunks(1));
    let split = run(data.chunks(7));
    assert_eq!(whole, bytewise);
    assert_eq!(whole, split);
});
