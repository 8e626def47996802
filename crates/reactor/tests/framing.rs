//! Pluggable framing end to end: `kuai-codec`'s length-delimited frames, and
//! a third-party (newline-delimited, RESP-like) framing defined only here.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kuai_codec::FrameCodec as KuaiFrames;
use kuai_reactor::{AcceptMode, CodecFraming, Framing, ReactorError, Server, service_fn};

fn connect(server: &Server) -> TcpStream {
    let stream = match TcpStream::connect(server.local_addr()) {
        Ok(s) => s,
        Err(e) => panic!("connect: {e}"),
    };
    let _ = stream.set_nodelay(true);
    if let Err(e) = stream.set_read_timeout(Some(Duration::from_secs(10))) {
        panic!("set_read_timeout: {e}");
    }
    stream
}

/// A service answering `fail` with an error, `panic` with a panic and
/// anything else with the request reversed.
fn reverse_service() -> impl kuai_reactor::Service {
    service_fn(|req: Bytes| async move {
        match &req[..] {
            b"fail" => Err(kuai_core::Error::not_found("no such key")),
            b"panic" => panic!("handler bug (expected by the test)"),
            _ => {
                let mut v = req.to_vec();
                v.reverse();
                Ok(Bytes::from(v))
            }
        }
    })
}

fn codec_server(frames: KuaiFrames, threads: usize, mode: AcceptMode) -> Server {
    let started = Server::builder()
        .threads(threads)
        .accept_mode(mode)
        .framing(CodecFraming::new(frames))
        .serve("127.0.0.1:0", |_| reverse_service());
    match started {
        Ok(s) => s,
        Err(e) => panic!("server failed to start: {e}"),
    }
}

/// Reads one kuai-codec frame; `None` when the server closed the stream.
fn read_codec(frames: &KuaiFrames, conn: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    match frames.read_frame(conn, &mut buf) {
        Ok(true) => Some(buf),
        _ => None,
    }
}

/// True once the server has closed the connection (EOF or reset).
fn closed(conn: &mut TcpStream) -> bool {
    let mut sink = [0u8; 256];
    loop {
        match conn.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                );
            }
        }
    }
}

#[test]
fn kuai_codec_clients_talk_to_the_reactor_varint_and_u32() {
    for frames in [KuaiFrames::varint(), KuaiFrames::u32_be()] {
        for mode in [AcceptMode::MainSub, AcceptMode::ReusePort] {
            let frames = frames.with_max_frame(64 * 1024);
            let server = codec_server(frames, 2, mode);
            let mut conns: Vec<TcpStream> = (0..3).map(|_| connect(&server)).collect();
            for (i, conn) in conns.iter_mut().enumerate() {
                // Pipelined: 40 frames (one over 128 bytes, so a 2-byte
                // varint) in a single write.
                let reqs: Vec<Vec<u8>> = (0..40)
                    .map(|j| {
                        if j == 7 {
                            vec![b'z'; 300 + i]
                        } else {
                            format!("{i}-{j}").into_bytes()
                        }
                    })
                    .collect();
                let mut wire = BytesMut::new();
                for r in &reqs {
                    assert!(frames.encode_frame(r, &mut wire).is_ok());
                }
                assert!(conn.write_all(&wire).is_ok());
                for r in &reqs {
                    let mut want = r.clone();
                    want.reverse();
                    assert_eq!(read_codec(&frames, conn), Some(want), "{frames:?} {mode:?}");
                }
                // Handler errors and panics come back as prefixed error
                // frames; the connection stays usable.
                assert!(frames.write_frame(conn, b"fail").is_ok());
                let err = read_codec(&frames, conn).unwrap_or_default();
                assert!(err.starts_with(b"ERR "), "{err:?}");
                assert!(String::from_utf8_lossy(&err).contains("no such key"));
                assert!(frames.write_frame(conn, b"panic").is_ok());
                let err = read_codec(&frames, conn).unwrap_or_default();
                assert!(
                    String::from_utf8_lossy(&err).contains("panicked"),
                    "{err:?}"
                );
                assert!(frames.write_frame(conn, b"ab").is_ok());
                assert_eq!(read_codec(&frames, conn), Some(b"ba".to_vec()));
            }
            drop(conns);
            let stats = server.shutdown();
            assert_eq!(stats.requests, 3 * 43);
            assert_eq!(stats.panics, 3);
            assert_eq!(stats.frame_errors, 0);
        }
    }
}

#[test]
fn kuai_codec_large_frames_span_many_reads() {
    let frames = KuaiFrames::varint().with_max_frame(1 << 20);
    let server = match Server::builder()
        .threads(1)
        .read_buffer(1024)
        .framing(CodecFraming::new(frames))
        .serve("127.0.0.1:0", |_| service_fn(|req| async move { Ok(req) }))
    {
        Ok(s) => s,
        Err(e) => panic!("start: {e}"),
    };
    let mut conn = connect(&server);
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    assert!(frames.write_frame(&mut conn, &big).is_ok());
    assert_eq!(read_codec(&frames, &mut conn), Some(big));
    assert!(frames.write_frame(&mut conn, b"after").is_ok());
    assert_eq!(read_codec(&frames, &mut conn), Some(b"after".to_vec()));
}

#[test]
fn kuai_codec_oversized_and_garbage_close_only_that_connection() {
    let frames = KuaiFrames::varint().with_max_frame(64);
    let server = codec_server(frames, 1, AcceptMode::MainSub);
    let mut good = connect(&server);
    assert!(frames.write_frame(&mut good, b"before").is_ok());
    assert_eq!(read_codec(&frames, &mut good), Some(b"erofeb".to_vec()));

    // Declares 300 bytes (> 64): an error frame, then that connection closes.
    let mut big = connect(&server);
    assert!(big.write_all(&[0xac, 0x02]).is_ok());
    let err = read_codec(&frames, &mut big).unwrap_or_default();
    assert!(err.starts_with(b"ERR "), "{err:?}");
    assert!(String::from_utf8_lossy(&err).contains("exceeds"), "{err:?}");
    assert!(closed(&mut big));

    // A varint that never ends is garbage.
    let mut evil = connect(&server);
    assert!(evil.write_all(&[0xff; 6]).is_ok());
    assert!(read_codec(&frames, &mut evil).is_some_and(|e| e.starts_with(b"ERR ")));
    assert!(closed(&mut evil));

    // A frame of exactly the maximum is fine.
    assert!(frames.write_frame(&mut good, &[b'a'; 64]).is_ok());
    assert_eq!(read_codec(&frames, &mut good), Some(vec![b'a'; 64]));

    assert!(frames.write_frame(&mut good, b"still fine").is_ok());
    assert_eq!(read_codec(&frames, &mut good), Some(b"enif llits".to_vec()));
    drop(good);
    assert_eq!(server.shutdown().frame_errors, 2);
}

#[test]
fn oversized_responses_become_error_frames_in_codec_framing() {
    let frames = KuaiFrames::u32_be().with_max_frame(16);
    let server = match Server::builder()
        .threads(1)
        .framing(CodecFraming::new(frames).error_prefix(&b"!"[..]))
        .serve("127.0.0.1:0", |_| {
            service_fn(|req: Bytes| async move { Ok(Bytes::from(req.repeat(4))) })
        }) {
        Ok(s) => s,
        Err(e) => panic!("start: {e}"),
    };
    let mut conn = connect(&server);
    assert!(frames.write_frame(&mut conn, b"abcd").is_ok());
    assert_eq!(
        read_codec(&frames, &mut conn),
        Some(b"abcdabcdabcdabcd".to_vec())
    );
    assert!(frames.write_frame(&mut conn, b"abcde").is_ok());
    let err = read_codec(&frames, &mut conn).unwrap_or_default();
    assert!(err.starts_with(b"!") && err.len() <= 16, "{err:?}");
    assert!(frames.write_frame(&mut conn, b"x").is_ok());
    assert_eq!(read_codec(&frames, &mut conn), Some(b"xxxx".to_vec()));
}

#[test]
fn refused_connections_get_an_error_in_the_servers_framing() {
    let frames = KuaiFrames::varint();
    let server = match Server::builder()
        .threads(1)
        .max_connections(1)
        .framing(CodecFraming::new(frames))
        .serve("127.0.0.1:0", |_| reverse_service())
    {
        Ok(s) => s,
        Err(e) => panic!("start: {e}"),
    };
    let mut first = connect(&server);
    assert!(frames.write_frame(&mut first, b"ok").is_ok());
    assert_eq!(read_codec(&frames, &mut first), Some(b"ko".to_vec()));
    let mut second = connect(&server);
    let err = read_codec(&frames, &mut second).unwrap_or_default();
    assert!(
        String::from_utf8_lossy(&err).contains("overloaded"),
        "{err:?}"
    );
    assert!(closed(&mut second));
}

/// A third-party framing: newline-terminated lines, `-ERR` error lines, a
/// maximum line length, and per-connection parser state (how far the buffer
/// was already scanned, so a long line arriving in pieces is scanned once).
#[derive(Debug, Clone)]
struct Lines {
    max_line: usize,
    scanned: usize,
}

impl Lines {
    fn new(max_line: usize) -> Self {
        Lines {
            max_line,
            scanned: 0,
        }
    }
}

impl Framing for Lines {
    type Error = ReactorError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, ReactorError> {
        let from = self.scanned.min(buf.len());
        match buf[from..].iter().position(|&b| b == b'\n') {
            Some(i) => {
                let end = from + i;
                self.scanned = 0;
                if end > self.max_line {
                    return Err(ReactorError::FrameTooLarge {
                        len: end,
                        max: self.max_line,
                    });
                }
                let mut line = buf.split_to(end + 1);
                line.truncate(end);
                if line.last() == Some(&b'\r') {
                    line.truncate(end - 1);
                }
                Ok(Some(line.freeze()))
            }
            None if buf.len() > self.max_line => Err(ReactorError::FrameTooLarge {
                len: buf.len(),
                max: self.max_line,
            }),
            None => {
                self.scanned = buf.len();
                Ok(None)
            }
        }
    }

    fn encode(&mut self, frame: &[u8], out: &mut BytesMut) -> Result<(), ReactorError> {
        if frame.contains(&b'\n') {
            return Err(ReactorError::InvalidConfig(
                "a response line may not contain a newline".into(),
            ));
        }
        out.extend_from_slice(b"+");
        out.extend_from_slice(frame);
        out.extend_from_slice(b"\r\n");
        Ok(())
    }

    fn encode_error(&mut self, message: &str, out: &mut BytesMut) {
        out.extend_from_slice(b"-ERR ");
        out.extend_from_slice(message.replace(['\r', '\n'], " ").as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

fn lines_server(max_line: usize) -> Server {
    let started = Server::builder()
        .threads(2)
        .framing(Lines::new(max_line))
        .serve("127.0.0.1:0", |_| {
            service_fn(|req: Bytes| async move {
                match &req[..] {
                    b"PING" => Ok(Bytes::from_static(b"PONG")),
                    b"MULTI" => Ok(Bytes::from_static(b"a\nb")),
                    r if r.starts_with(b"ECHO ") => Ok(req.slice(5..)),
                    _ => Err(kuai_core::Error::invalid_input("unknown command")),
                }
            })
        });
    match started {
        Ok(s) => s,
        Err(e) => panic!("server failed to start: {e}"),
    }
}

fn read_line(reader: &mut BufReader<TcpStream>) -> Option<String> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line),
    }
}

#[test]
fn a_custom_line_framing_plugs_in() {
    let server = lines_server(64);
    let conn = connect(&server);
    let mut writer = match conn.try_clone() {
        Ok(w) => w,
        Err(e) => panic!("clone: {e}"),
    };
    let mut reader = BufReader::new(conn);
    // Pipelined, mixed line endings, and a command split across writes.
    assert!(
        writer
            .write_all(b"PING\r\nECHO hi\nNOPE\nMULTI\nECHO sp")
            .is_ok()
    );
    assert_eq!(read_line(&mut reader).as_deref(), Some("+PONG\r\n"));
    assert_eq!(read_line(&mut reader).as_deref(), Some("+hi\r\n"));
    let err = read_line(&mut reader).unwrap_or_default();
    assert!(
        err.starts_with("-ERR ") && err.contains("unknown command"),
        "{err}"
    );
    // A response the framing cannot encode becomes an error line.
    let err = read_line(&mut reader).unwrap_or_default();
    assert!(err.starts_with("-ERR ") && err.contains("newline"), "{err}");
    std::thread::sleep(Duration::from_millis(20));
    assert!(writer.write_all(b"lit\n").is_ok());
    assert_eq!(read_line(&mut reader).as_deref(), Some("+split\r\n"));
    drop((writer, reader));
    let stats = server.shutdown();
    assert_eq!(stats.requests, 5);
    assert_eq!(stats.frame_errors, 0);
}

#[test]
fn a_custom_framing_error_closes_only_that_connection() {
    let server = lines_server(16);
    let mut good = connect(&server);
    let mut good_reader = match good.try_clone() {
        Ok(r) => BufReader::new(r),
        Err(e) => panic!("clone: {e}"),
    };
    assert!(good.write_all(b"PING\n").is_ok());
    assert_eq!(read_line(&mut good_reader).as_deref(), Some("+PONG\r\n"));

    // A line longer than the maximum, with no newline in sight: the framing
    // refuses it without buffering more, the connection gets an error line
    // and is closed.
    let mut long = connect(&server);
    assert!(long.write_all(&[b'x'; 100]).is_ok());
    let mut long_reader = match long.try_clone() {
        Ok(r) => BufReader::new(r),
        Err(e) => panic!("clone: {e}"),
    };
    let err = read_line(&mut long_reader).unwrap_or_default();
    assert!(err.starts_with("-ERR ") && err.contains("exceeds"), "{err}");
    assert!(closed(&mut long));

    assert!(good.write_all(b"ECHO ok\n").is_ok());
    assert_eq!(read_line(&mut good_reader).as_deref(), Some("+ok\r\n"));
    drop((good, good_reader));
    assert_eq!(server.shutdown().frame_errors, 1);
}
