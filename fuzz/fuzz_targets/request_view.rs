//! The request view: any body gives a view or a 400-class error, and a view's
//! rewrite (model, and the usage request for streams) is valid JSON with the
//! new model and every other member intact.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use switchyard::gateway::request_view::RequestView;

fuzz_target!(|data: &[u8]| {
    let Ok(view) = RequestView::parse(Bytes::copy_from_slice(data)) else {
        return;
    };
    assert!(!view.model().is_empty());
    assert_eq!(view.body_len(), data.len());
    let same = view.body_for(&view.model().to_string(), false);
    assert_eq!(
        &same[..],
        data,
        "an unchanged model keeps the body byte for byte"
    );
    for request_usage in [false, true] {
        let rewritten = view.body_for("fuzz/model:1.0\"\\", request_usage);
        let again = RequestView::parse(rewritten).expect("a rewritten body parses");
        assert_eq!(again.model(), "fuzz/model:1.0\"\\");
        assert_eq!(again.streaming(), view.streaming());
        assert_eq!(again.max_output_tokens(), view.max_output_tokens());
        if request_usage {
            assert!(!again.adds_usage_request(), "the usage request is in the body");
        }
    }
});
