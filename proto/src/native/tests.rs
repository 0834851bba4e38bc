//! Unit tests of `native`.

use super::*;
use crate::frame::decode_frame;

fn round_trip_cmd(cmd: &Command<'_>) {
    let l = Limits::default();
    let mut out = BytesMut::new();
    encode_request(&mut out, 42, 9, cmd).unwrap();
    let f = decode_frame(&out, &l).unwrap().unwrap();
    assert_eq!(f.len(), out.len());
    assert_eq!(f.header.request_id, 42);
    assert_eq!(f.header.epoch, 9);
    assert!(!f.header.is_response());
    assert_eq!(&decode_request(&f.header, f.body(&out), &l).unwrap(), cmd);
}

#[test]
fn request_examples() {
    round_trip_cmd(&Command::Get { key: b"hello" });
    round_trip_cmd(&Command::Set {
        key: b"k",
        value: b"v",
        expiry: Expiry::RelativeMs(1500),
        cond: SetCond::Nx,
        if_version: Some(7),
        tags: vec![b"t1", b"t2"],
        get_version: true,
    });
    round_trip_cmd(&Command::Flush);
    round_trip_cmd(&Command::Hello {
        version: Some(1),
        auth: Some(Credentials {
            username: None,
            password: b"pw",
        }),
    });
}

#[test]
fn get_body_layout() {
    let mut out = BytesMut::new();
    encode_request(&mut out, 1, 0, &Command::Get { key: b"ab" }).unwrap();
    assert_eq!(&out[HEADER_LEN..], b"\x02\0\0\0\0\0\0\0ab");
}

#[test]
fn fast_path_matches_generic_encoder() {
    for ttl in [None, Some(0), Some(12345)] {
        let mut a = BytesMut::new();
        let mut b = BytesMut::new();
        encode_value_reply(&mut a, 5, 6, b"value", 77, ttl).unwrap();
        let r = Response::Value {
            value: b"value",
            version: 77,
            ttl_ms: ttl,
        };
        encode_response(&mut b, 5, 6, &r).unwrap();
        assert_eq!(a, b);
        // And bincode agrees with the hand-written layout.
        let bin = opts(usize::MAX)
            .serialize(&(&b"value"[..], 77u64, ttl))
            .unwrap();
        assert_eq!(&a[HEADER_LEN..], &bin[..]);
        let l = Limits::default();
        let f = decode_frame(&a, &l).unwrap().unwrap();
        assert_eq!(decode_response(&f.header, f.body(&a), &l).unwrap(), r);
    }
}

#[test]
fn trailing_bytes_and_unknown_opcodes_are_errors() {
    let l = Limits::default();
    let mut out = BytesMut::new();
    encode_request(&mut out, 1, 0, &Command::Get { key: b"ab" }).unwrap();
    let f = decode_frame(&out, &l).unwrap().unwrap();
    let mut body = f.body(&out).to_vec();
    body.push(0);
    assert!(matches!(
        decode_request(&f.header, &body, &l),
        Err(ProtoError::Body(_))
    ));
    let mut h = f.header;
    h.opcode = 0x7f;
    assert!(matches!(
        decode_request(&h, f.body(&out), &l),
        Err(ProtoError::UnknownOpcode(0x7f))
    ));
    assert!(matches!(
        decode_response(&f.header, f.body(&out), &l),
        Err(ProtoError::UnknownOpcode(0x01))
    ));
}

#[test]
fn huge_declared_lengths_do_not_allocate_or_panic() {
    let l = Limits::default();
    let h = Header {
        version: VERSION,
        opcode: Opcode::Del.into(),
        flags: 0,
        request_id: 0,
        epoch: 0,
        body_len: 8,
    };
    let body = u64::MAX.to_le_bytes();
    assert!(matches!(
        decode_request(&h, &body, &l),
        Err(ProtoError::TooLarge(_))
    ));
    let mut body = 3u64.to_le_bytes().to_vec();
    body.extend_from_slice(&[0; 16]);
    assert!(matches!(
        decode_request(&h, &body, &l),
        Err(ProtoError::Invalid(_))
    ));
    let h = Header {
        opcode: Opcode::Get.into(),
        ..h
    };
    assert!(decode_request(&h, &body, &l).is_err());
}

#[test]
fn oversized_key_is_too_large() {
    let l = Limits {
        max_key: 4,
        ..Limits::default()
    };
    let mut out = BytesMut::new();
    encode_request(&mut out, 1, 0, &Command::Get { key: b"abcde" }).unwrap();
    let f = decode_frame(&out, &l).unwrap().unwrap();
    assert!(matches!(
        decode_request(&f.header, f.body(&out), &l),
        Err(ProtoError::TooLarge(_))
    ));
}

#[test]
fn encode_appends_after_existing_bytes() {
    let mut out = BytesMut::from(&b"xyz"[..]);
    encode_response(&mut out, 3, 4, &Response::Int(-5)).unwrap();
    let l = Limits::default();
    let f = decode_frame(&out[3..], &l).unwrap().unwrap();
    assert_eq!(
        decode_response(&f.header, f.body(&out[3..]), &l).unwrap(),
        Response::Int(-5)
    );
}
