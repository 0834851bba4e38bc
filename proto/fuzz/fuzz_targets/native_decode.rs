//! Fuzzes the native decoders: frame header, then the body as both a request and a response.
//! Anything decoded is re-encoded and must decode to the same value.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ringcache_proto::{
    decode_frame, decode_request, decode_response, encode_request, encode_response, Limits,
};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let mut rest = data;
    // Walk consecutive frames like a connection's read loop.
    while let Ok(Some(frame)) = decode_frame(rest, &limits) {
        let body = frame.body(rest);
        let h = frame.header;
        if let Ok(cmd) = decode_request(&h, body, &limits) {
            let mut out = BytesMut::new();
            encode_request(&mut out, h.request_id, h.epoch, &cmd).expect("re-encode request");
            let f2 = decode_frame(&out, &limits)
                .expect("frame")
                .expect("complete");
            let again = decode_request(&f2.header, f2.body(&out), &limits).expect("decode");
            assert_eq!(again, cmd);
        }
        // Also try the same body under every opcode byte that frame carries, as a response.
        if let Ok(resp) = decode_response(&h, body, &limits) {
            let mut out = BytesMut::new();
            encode_response(&mut out, h.request_id, h.epoch, &resp).expect("re-encode response");
            let f2 = decode_frame(&out, &limits)
                .expect("frame")
                .expect("complete");
            let again = decode_response(&f2.header, f2.body(&out), &limits).expect("decode");
            assert_eq!(again, resp);
        }
        rest = rest.get(frame.len()..).unwrap_or_default();
    }
    // Bodies without a valid header: try every opcode on the raw bytes.
    if let Some((&op, body)) = data.split_first() {
        let h = ringcache_proto::Header {
            version: ringcache_proto::VERSION,
            opcode: op,
            flags: 0,
            request_id: 0,
            epoch: 0,
            body_len: body.len() as u32,
        };
        let _ = decode_request(&h, body, &limits);
        let _ = decode_response(&h, body, &limits);
    }
});
