//! The TOML config parser and validator: any text gives a config or an error,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = Config::parse(text, None) {
        // A valid config's names are unique and its limits are positive.
        assert!(config.server.max_request_body_bytes > 0);
        let mut names: Vec<_> = config.upstreams.iter().map(|u| &u.name).collect();
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(
            names.len(),
            count,
            "duplicate upstream names passed validation"
        );
    }
});
