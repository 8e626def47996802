//! A small blocking client for the frame protocol (tests, tools, examples).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::ReactorError;
use crate::frame::{DEFAULT_MAX_FRAME, Frame, FrameCodec};

/// A blocking, pipelining-capable client: [`send`](Client::send) any number
/// of requests, then [`recv`](Client::recv) their responses in order.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    codec: FrameCodec,
    rbuf: BytesMut,
    wbuf: BytesMut,
}

impl Client {
    /// Connects with `TCP_NODELAY` and a 10 s read timeout.
    pub fn connect(addr: impl ToSocketAddrs) -> Result<Self, ReactorError> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Client {
            stream,
            codec: FrameCodec::new(DEFAULT_MAX_FRAME),
            rbuf: BytesMut::with_capacity(4096),
            wbuf: BytesMut::new(),
        })
    }

    /// Changes the read timeout (`None`: block forever).
    pub fn set_read_timeout(&mut self, d: Option<Duration>) -> Result<(), ReactorError> {
        self.stream.set_read_timeout(d)?;
        Ok(())
    }

    /// The underlying socket, e.g. to write raw bytes in tests.
    pub fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Writes one request frame.
    pub fn send(&mut self, payload: &[u8]) -> Result<(), ReactorError> {
        self.wbuf.clear();
        self.codec.encode(payload, &mut self.wbuf)?;
        self.stream.write_all(&self.wbuf)?;
        Ok(())
    }

    /// Writes several request frames with one `write`.
    pub fn send_many<'a>(
        &mut self,
        payloads: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<(), ReactorError> {
        self.wbuf.clear();
        for p in payloads {
            self.codec.encode(p, &mut self.wbuf)?;
        }
        self.stream.write_all(&self.wbuf)?;
        Ok(())
    }

    /// Reads the next response frame; `Closed` if the server closed first.
    pub fn recv_frame(&mut self) -> Result<Frame, ReactorError> {
        loop {
            if let Some(frame) = self.codec.decode(&mut self.rbuf)? {
                return Ok(frame);
            }
            self.rbuf.reserve(4096);
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(ReactorError::Closed("server closed the connection"));
            }
            self.rbuf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads the next response: its payload, or [`ReactorError::Remote`]
    /// for an error frame.
    pub fn recv(&mut self) -> Result<Bytes, ReactorError> {
        match self.recv_frame()? {
            Frame::Data(b) => Ok(b),
            Frame::Error(msg) => Err(ReactorError::Remote(msg)),
        }
    }

    /// One request, one response.
    pub fn call(&mut self, payload: &[u8]) -> Result<Bytes, ReactorError> {
        self.send(payload)?;
        self.recv()
    }
}
