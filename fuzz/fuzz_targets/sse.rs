//! The SSE parser never panics, never exceeds its bounds, and gives the same events however
//! the bytes are chunked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use open_cowork_gateway::cloud::sse::SseParser;

fuzz_target!(|input: &[u8]| {
    let Some((&cut, stream)) = input.split_first() else { return };
    let parse = |chunks: &[&[u8]]| {
        let mut parser = SseParser::new(256, 1024);
        let mut out = Vec::new();
        for chunk in chunks {
            if parser.push(chunk, &mut out).is_err() {
                return None;
            }
        }
        parser.finish(&mut out).ok().map(|()| out)
    };
    let at = usize::from(cut) % (stream.len() + 1);
    let whole = parse(&[stream]);
    let split = parse(&[&stream[..at], &stream[at..]]);
    if let (Some(whole), Some(split)) = (whole, split) {
        assert_eq!(whole, split);
        assert!(whole.iter().all(|e| e.data.len() <= 1024));
    }
});
