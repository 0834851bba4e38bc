//! Property tests: native and RESP round trips, split-input equivalence, and no-panic decoding.

use std::borrow::Cow;

use bytes::BytesMut;
use proptest::prelude::*;
use ringcache_proto::*;

fn leak(v: Vec<u8>) -> &'static [u8] {
    Box::leak(v.into_boxed_slice())
}

fn bytes() -> impl Strategy<Value = &'static [u8]> {
    prop::collection::vec(any::<u8>(), 0..24).prop_map(leak)
}

fn key_list(min: usize) -> impl Strategy<Value = Vec<&'static [u8]>> {
    prop::collection::vec(bytes(), min..5)
}

/// Positive values a RESP client can send (Redis integers are i64, zero is invalid).
fn resp_ms() -> impl Strategy<Value = u64> {
    1..=i64::MAX as u64
}

fn expiry(resp: bool) -> BoxedStrategy<Expiry> {
    let ms = if resp {
        resp_ms().boxed()
    } else {
        any::<u64>().boxed()
    };
    prop_oneof![
        Just(Expiry::None),
        Just(Expiry::KeepTtl),
        ms.clone().prop_map(Expiry::RelativeMs),
        ms.prop_map(Expiry::AbsoluteUnixMs),
    ]
    .boxed()
}

fn set_cond() -> impl Strategy<Value = SetCond> {
    prop_oneof![Just(SetCond::Always), Just(SetCond::Nx), Just(SetCond::Xx)]
}

/// Any command; with `resp`, only commands a RESP client can express exactly.
fn command(resp: bool) -> BoxedStrategy<Command<'static>> {
    let min_keys = usize::from(resp);
    let expire_ms = if resp {
        (0..=i64::MAX as u64).boxed()
    } else {
        any::<u64>().boxed()
    };
    let hello = if resp {
        prop_oneof![
            Just((None, None)),
            (any::<u8>(), prop::option::of((bytes(), bytes())))
                .prop_map(|(v, a)| (Some(v), a.map(|(u, p)| (Some(u), p)))),
        ]
        .boxed()
    } else {
        (
            prop::option::of(any::<u8>()),
            prop::option::of((prop::option::of(bytes()), bytes())),
        )
            .boxed()
    };
    let set = (
        bytes(),
        bytes(),
        expiry(resp),
        set_cond(),
        prop::option::of(any::<u64>()),
        key_list(0),
        any::<bool>(),
    )
        .prop_map(
            |(key, value, expiry, cond, if_version, tags, get_version)| Command::Set {
                key,
                value,
                expiry,
                cond,
                if_version,
                tags,
                get_version,
            },
        );
    prop_oneof![
        bytes().prop_map(|key| Command::Get { key }),
        bytes().prop_map(|key| Command::GetVersion { key }),
        set,
        key_list(min_keys).prop_map(|keys| Command::Del { keys }),
        key_list(min_keys).prop_map(|keys| Command::Exists { keys }),
        key_list(min_keys).prop_map(|keys| Command::Touch { keys }),
        (bytes(), expire_ms).prop_map(|(key, ms)| Command::Expire { key, ms }),
        (bytes(), any::<bool>()).prop_map(|(key, millis)| Command::Ttl { key, millis }),
        bytes().prop_map(|key| Command::Persist { key }),
        key_list(min_keys).prop_map(|keys| Command::MGet { keys }),
        prop::collection::vec((bytes(), bytes()), min_keys..4)
            .prop_map(|pairs| Command::MSet { pairs }),
        (bytes(), any::<i64>()).prop_map(|(key, delta)| Command::IncrBy { key, delta }),
        prop::option::of(bytes()).prop_map(|msg| Command::Ping { msg }),
        Just(Command::Flush),
        bytes().prop_map(|prefix| Command::InvalidatePrefix { prefix }),
        bytes().prop_map(|tag| Command::InvalidateTag { tag }),
        Just(Command::Stats),
        Just(Command::Topology),
        hello.prop_map(|(version, auth)| Command::Hello {
            version,
            auth: auth.map(|(username, password)| Credentials { username, password }),
        }),
        (prop::option::of(bytes()), bytes()).prop_map(|(username, password)| Command::Auth {
            creds: Credentials { username, password }
        }),
        bytes().prop_map(|pattern| Command::ConfigGet { pattern }),
        Just(Command::CommandDocs),
        Just(Command::Quit),
        any::<u32>().prop_map(|db| Command::Select { db }),
        Just(Command::ClientSetInfo),
        bytes().prop_map(|name| Command::ClientSetName { name }),
    ]
    .boxed()
}

fn error_kind() -> impl Strategy<Value = ErrorKind> {
    prop_oneof![
        Just(ErrorKind::WrongType),
        Just(ErrorKind::NotFound),
        Just(ErrorKind::TooLarge),
        Just(ErrorKind::ConditionFailed),
        Just(ErrorKind::VersionMismatch),
        Just(ErrorKind::Malformed),
        Just(ErrorKind::Unsupported),
        any::<u32>().prop_map(|epoch| ErrorKind::Redirect { epoch }),
        Just(ErrorKind::Internal),
        Just(ErrorKind::Busy),
    ]
}

fn value_ref() -> impl Strategy<Value = ValueRef<'static>> {
    (bytes(), any::<u64>(), prop::option::of(any::<u64>())).prop_map(|(value, version, ttl_ms)| {
        ValueRef {
            value,
            version,
            ttl_ms,
        }
    })
}

fn response() -> impl Strategy<Value = Response<'static>> {
    prop_oneof![
        Just(Response::Ok),
        Just(Response::Nil),
        value_ref().prop_map(|v| Response::Value {
            value: v.value,
            version: v.version,
            ttl_ms: v.ttl_ms
        }),
        any::<i64>().prop_map(Response::Int),
        any::<bool>().prop_map(Response::Bool),
        prop::collection::vec(prop::option::of(value_ref()), 0..5).prop_map(Response::Values),
        bytes().prop_map(Response::Bulk),
        Just(Response::Pong),
        prop::collection::vec((".{0,12}", any::<u64>()), 0..5).prop_map(|v| Response::Stats(
            v.into_iter().map(|(k, n)| (Cow::Owned(k), n)).collect()
        )),
        (
            any::<u64>(),
            any::<u16>(),
            prop::collection::vec((any::<u16>(), any::<u16>()), 0..5)
        )
            .prop_map(|(node_id, main_port, cores)| Response::Topology(Topology {
                node_id,
                main_port,
                cores: cores
                    .into_iter()
                    .map(|(core, port)| CoreInfo { core, port })
                    .collect(),
            })),
        prop::collection::vec((bytes(), bytes()), 0..4).prop_map(Response::Pairs),
        (any::<u8>(), any::<u64>()).prop_map(|(proto, id)| Response::Hello { proto, id }),
        (error_kind(), ".{0,40}").prop_map(|(kind, m)| Response::error(kind, m)),
    ]
}

/// Parses every complete RESP command in `buf` into owned argument lists.
fn resp_commands(buf: &[u8], limits: &Limits) -> (Vec<Vec<Vec<u8>>>, Result<(), RespError>) {
    let mut p = RespParser::new();
    let mut rest = buf;
    let mut cmds = Vec::new();
    loop {
        match p.parse(rest, limits) {
            Ok(Some(n)) => {
                cmds.push(p.args(rest).iter().map(<[u8]>::to_vec).collect());
                rest = &rest[n..];
            }
            Ok(None) => return (cmds, Ok(())),
            Err(e) => return (cmds, Err(e)),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn native_request_round_trip(cmd in command(false), id in any::<u64>(), epoch in any::<u32>()) {
        let l = Limits::default();
        let mut out = BytesMut::from(&b"junk"[..]);
        encode_request(&mut out, id, epoch, &cmd).unwrap();
        let buf = &out[4..];
        let f = decode_frame(buf, &l).unwrap().unwrap();
        prop_assert_eq!(f.len(), buf.len());
        prop_assert_eq!(f.header.request_id, id);
        prop_assert_eq!(f.header.epoch, epoch);
        prop_assert_eq!(f.header.opcode, u8::from(cmd.opcode()));
        prop_assert_eq!(decode_request(&f.header, f.body(buf), &l).unwrap(), cmd);
        // Every strict prefix needs more bytes.
        for cut in 0..buf.len() {
            prop_assert_eq!(decode_frame(&buf[..cut], &l), Ok(None));
        }
    }

    #[test]
    fn native_response_round_trip(resp in response(), id in any::<u64>(), epoch in any::<u32>()) {
        let l = Limits::default();
        let mut out = BytesMut::new();
        encode_response(&mut out, id, epoch, &resp).unwrap();
        let f = decode_frame(&out, &l).unwrap().unwrap();
        prop_assert_eq!(f.len(), out.len());
        prop_assert!(f.header.is_response());
        prop_assert_eq!(f.header.request_id, id);
        prop_assert_eq!(decode_response(&f.header, f.body(&out), &l).unwrap(), resp);
    }

    #[test]
    fn value_fast_path_matches(v in value_ref(), id in any::<u64>(), epoch in any::<u32>()) {
        let mut a = BytesMut::new();
        let mut b = BytesMut::new();
        encode_value_reply(&mut a, id, epoch, v.value, v.version, v.ttl_ms).unwrap();
        let r = Response::Value { value: v.value, version: v.version, ttl_ms: v.ttl_ms };
        encode_response(&mut b, id, epoch, &r).unwrap();
        prop_assert_eq!(a, b);
    }

    #[test]
    fn resp_command_round_trip(cmd in command(true)) {
        let l = Limits::default();
        let mut out = BytesMut::new();
        resp_encode::write_command(&mut out, &cmd);
        let mut p = RespParser::new();
        prop_assert_eq!(p.parse(&out, &l), Ok(Some(out.len())));
        let args = p.args(&out);
        prop_assert_eq!(parse_command(&args, &l), Ok(cmd));
    }

    #[test]
    fn resp_args_round_trip(
        cmds in prop::collection::vec(prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..6), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let l = Limits::default();
        let mut out = BytesMut::new();
        for c in &cmds {
            let refs: Vec<&[u8]> = c.iter().map(Vec::as_slice).collect();
            resp_encode::write_args(&mut out, &refs);
        }
        let (parsed, res) = resp_commands(&out, &l);
        prop_assert_eq!(res, Ok(()));
        prop_assert_eq!(&parsed, &cmds);
        // Feeding a prefix first, then the whole buffer, gives the same first command.
        let cut = cut.index(out.len() + 1);
        let mut p = RespParser::new();
        if let Ok(None) = p.parse(&out[..cut], &l) {
            let n = p.parse(&out, &l).unwrap().unwrap();
            let first: Vec<Vec<u8>> = p.args(&out).iter().map(<[u8]>::to_vec).collect();
            prop_assert_eq!(&first, &cmds[0]);
            prop_assert!(n <= out.len());
        }
    }

    #[test]
    fn resp_split_anywhere_matches_whole(
        data in prop::collection::vec(prop_oneof![
            Just(b'*'), Just(b'$'), Just(b'\r'), Just(b'\n'), Just(b' '), Just(b'1'), Just(b'3'),
            Just(b'-'), any::<u8>()
        ], 0..200),
        cut in any::<prop::sample::Index>(),
    ) {
        let l = Limits::default();
        let cut = cut.index(data.len() + 1);
        let whole = RespParser::new().parse(&data, &l);
        let mut p = RespParser::new();
        match p.parse(&data[..cut], &l) {
            Ok(None) => {
                let again = p.parse(&data, &l);
                prop_assert_eq!(&again, &whole);
            }
            Ok(Some(n)) => prop_assert_eq!(whole, Ok(Some(n))),
            Err(e) => prop_assert_eq!(whole, Err(e)),
        }
    }

    #[test]
    fn native_split_anywhere_matches_whole(
        data in prop::collection::vec(any::<u8>(), 0..80),
        cut in any::<prop::sample::Index>(),
    ) {
        let l = Limits::default();
        let mut buf = b"RC\x01".to_vec();
        buf.extend_from_slice(&data);
        let cut = cut.index(buf.len() + 1);
        let whole = decode_frame(&buf, &l);
        match decode_frame(&buf[..cut], &l) {
            Ok(None) => {}
            Ok(Some(f)) => prop_assert_eq!(whole, Ok(Some(f))),
            Err(e) => prop_assert_eq!(whole, Err(e)),
        }
    }

    #[test]
    fn random_bytes_never_panic_native(
        data in prop::collection::vec(any::<u8>(), 0..200),
        opcode in any::<u8>(),
    ) {
        let l = Limits::default();
        let _ = decode_frame(&data, &l);
        let h = Header { version: VERSION, opcode, flags: 0, request_id: 0, epoch: 0,
                         body_len: data.len() as u32 };
        let _ = decode_request(&h, &data, &l);
        let _ = decode_response(&h, &data, &l);
        let mut with_header = h.to_bytes().to_vec();
        with_header.extend_from_slice(&data);
        if let Ok(Some(f)) = decode_frame(&with_header, &l) {
            let _ = decode_request(&f.header, f.body(&with_header), &l);
            let _ = decode_response(&f.header, f.body(&with_header), &l);
        }
    }

    #[test]
    fn mutated_frames_never_panic(
        cmd in command(false),
        resp in response(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let l = Limits::default();
        for is_resp in [false, true] {
            let mut out = BytesMut::new();
            if is_resp {
                encode_response(&mut out, 1, 1, &resp).unwrap();
            } else {
                encode_request(&mut out, 1, 1, &cmd).unwrap();
            }
            let mut buf = out.to_vec();
            for (i, b) in &flips {
                let i = i.index(buf.len());
                buf[i] = *b;
            }
            if let Ok(Some(f)) = decode_frame(&buf, &l) {
                let body = f.body(&buf);
                let _ = decode_request(&f.header, body, &l);
                let _ = decode_response(&f.header, body, &l);
            }
        }
    }

    #[test]
    fn random_bytes_never_panic_resp(data in prop::collection::vec(any::<u8>(), 0..300)) {
        let l = Limits::default();
        let mut p = RespParser::new();
        let mut rest = &data[..];
        while let Ok(Some(n)) = p.parse(rest, &l) {
            let args = p.args(rest);
            let _ = parse_command(&args, &l);
            rest = &rest[n..];
        }
    }

    #[test]
    fn random_args_never_panic_parse_command(
        args in prop::collection::vec(prop_oneof![
            prop::sample::select(vec![
                "GET", "set", "SET", "EX", "px", "EXAT", "PXAT", "KEEPTTL", "NX", "XX",
                "IF-VERSION", "TAG", "GETVERSION", "DEL", "MSET", "MGET", "INCRBY", "DECRBY",
                "HELLO", "AUTH", "SETNAME", "CONFIG", "CLIENT", "SETINFO", "INVALIDATE", "PREFIX",
                "EXPIRE", "PEXPIRE", "SELECT", "PING", "FLUSHALL", "ASYNC", "1", "-1", "0",
                "9223372036854775807", "-9223372036854775808", "3",
            ]).prop_map(|s| s.as_bytes().to_vec()),
            prop::collection::vec(any::<u8>(), 0..10),
        ], 0..8),
    ) {
        let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let _ = parse_command(&refs[..], &Limits::default());
    }
}
