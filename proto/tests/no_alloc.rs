//! The hot paths (GET/SET parsing, GET-hit encoding) must not allocate: checked with a counting
//! global allocator. One test function only, so no other test thread allocates meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::BytesMut;
use ringcache_proto::*;

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`; the counter is only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwards to the system allocator with the caller's layout.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs_during(f: impl FnOnce()) -> usize {
    let before = ALLOCS.load(Ordering::Relaxed);
    f();
    ALLOCS.load(Ordering::Relaxed) - before
}

#[test]
fn hot_paths_do_not_allocate() {
    let l = Limits::default();
    let get = b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n";
    let set = b"*5\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n$2\r\nEX\r\n$2\r\n10\r\n";
    let mut parser = RespParser::new();
    // Warm up: the parser's range Vec grows once.
    parser.parse(set, &l).unwrap();
    let mut out = BytesMut::with_capacity(4096);

    let n = allocs_during(|| {
        for input in [&get[..], &set[..]] {
            let used = parser.parse(input, &l).unwrap().unwrap();
            assert_eq!(used, input.len());
            let cmd = parse_command(&parser.args(input), &l).unwrap();
            assert!(matches!(cmd, Command::Get { .. } | Command::Set { .. }));
        }
    });
    assert_eq!(n, 0, "RESP GET/SET parsing allocated");

    let n = allocs_during(|| {
        out.clear();
        let resp = Response::Value {
            value: b"value",
            version: 1,
            ttl_ms: None,
        };
        write_response(&mut out, RespVersion::V2, Opcode::Get, &resp);
        write_response(&mut out, RespVersion::V2, Opcode::Set, &Response::Ok);
        write_response(&mut out, RespVersion::V3, Opcode::Get, &Response::Nil);
    });
    assert_eq!(n, 0, "RESP reply encoding allocated");

    let mut frames = BytesMut::with_capacity(4096);
    let cmd_get = Command::Get { key: b"key" };
    let cmd_set = Command::Set {
        key: b"key",
        value: b"value",
        expiry: Expiry::RelativeMs(10),
        cond: SetCond::Always,
        if_version: None,
        tags: Vec::new(),
        get_version: false,
    };
    let n = allocs_during(|| {
        encode_request(&mut frames, 1, 0, &cmd_get).unwrap();
        encode_request(&mut frames, 2, 0, &cmd_set).unwrap();
    });
    assert_eq!(n, 0, "native request encoding allocated");

    let n = allocs_during(|| {
        let mut rest = &frames[..];
        for _ in 0..2 {
            let f = decode_frame(rest, &l).unwrap().unwrap();
            let cmd = decode_request(&f.header, f.body(rest), &l).unwrap();
            assert!(matches!(cmd, Command::Get { .. } | Command::Set { .. }));
            rest = &rest[f.len()..];
        }
    });
    assert_eq!(n, 0, "native GET/SET decoding allocated");

    let n = allocs_during(|| {
        out.clear();
        encode_value_reply(&mut out, 1, 0, b"value", 7, Some(100)).unwrap();
        encode_response(&mut out, 2, 0, &Response::Ok).unwrap();
        encode_response(&mut out, 3, 0, &Response::Nil).unwrap();
    });
    assert_eq!(n, 0, "native reply encoding allocated");
}
