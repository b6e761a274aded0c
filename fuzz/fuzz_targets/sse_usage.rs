//! The forwarder's tail and `usage` reader over arbitrary response bodies, split
//! into frames at 0xFF bytes: no panic, and the frame split does not change the
//! answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::gateway::stream::usage_after_frames;

fuzz_target!(|data: &[u8]| {
    let framed = usage_after_frames(data.split(|&b| b == 0xff));
    let joined: Vec<u8> = data.iter().copied().filter(|&b| b != 0xff).collect();
    let whole = usage_after_frames([joined.as_slice()]);
    assert_eq!(
        framed.map(|u| (u.prompt_tokens, u.completion_tokens)),
        whole.map(|u| (u.prompt_tokens, u.completion_tokens)),
        "frame boundaries changed the usage read"
    );
});
