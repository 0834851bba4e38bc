//! Fuzzes the RESP parser (whole input and split in two at a data-chosen point) and
//! `parse_command`; any parsed command is re-written as RESP and must parse to itself.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ringcache_proto::{parse_command, resp_encode, Limits, RespParser};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let Some((&split, data)) = data.split_first() else {
        return;
    };

    // Whole input, command by command.
    let mut parser = RespParser::new();
    let mut rest = data;
    let mut first = None;
    loop {
        match parser.parse(rest, &limits) {
            Ok(Some(n)) => {
                if first.is_none() {
                    first = Some(Ok(Some(n)));
                }
                let args = parser.args(rest);
                if let Ok(cmd) = parse_command(&args, &limits) {
                    // Parsing normalises (EX -> ms, DECR -> delta -1, ...), so a parsed command
                    // written back out parses to exactly itself.
                    let mut out = BytesMut::new();
                    resp_encode::write_command(&mut out, &cmd);
                    let mut p2 = RespParser::new();
                    let used = p2
                        .parse(&out, &limits)
                        .expect("re-parse")
                        .expect("complete");
                    assert_eq!(used, out.len());
                    let again = parse_command(&p2.args(&out), &limits).expect("re-command");
                    assert_eq!(again, cmd);
                }
                rest = rest.get(n..).unwrap_or_default();
            }
            other => {
                if first.is_none() {
                    first = Some(other);
                }
                break;
            }
        }
    }

    // Split in two: a prefix first, then the whole, must match parsing the whole at once.
    let cut = usize::from(split) * data.len() / 255;
    let mut p = RespParser::new();
    let whole = first.unwrap_or(Ok(None));
    match p.parse(data.get(..cut).unwrap_or_default(), &limits) {
        Ok(None) => assert_eq!(p.parse(data, &limits), whole),
        Ok(Some(n)) => assert_eq!(whole, Ok(Some(n))),
        Err(e) => assert_eq!(whole, Err(e)),
    }
});
