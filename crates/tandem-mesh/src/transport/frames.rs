//! What travels on the mesh's QUIC streams, as pure encoders and decoders that refuse garbage.
//!
//! - The **control stream** (one per peer, opened by the dialer) starts with
//!   [`CONTROL_GREETING`] from each side, then carries route messages, each a big-endian `u32`
//!   length and the bytes of [`crate::encode`].
//! - A **flow** (one bidirectional stream per TCP connection) starts with a [`FlowOpen`] from
//!   the opener, naming the destination and the hops still to go, and is answered with an
//!   [`OpenReply`] by the exit, relayed back by every hop, before any byte of the connection.
//!   Both are a big-endian `u16` length and a body that begins with [`FLOW_VERSION`].

use std::fmt;

use crate::advert::{decode, encode, AdvertError, AgentId, Message, MAX_PATH_LEN};
use crate::MAX_MESSAGE_BYTES;

/// The first bytes each side writes on the control stream; anything else is not a mesh peer.
pub const CONTROL_GREETING: &[u8; 8] = b"tmesh/c1";
/// The version byte of flow headers and replies.
pub const FLOW_VERSION: u8 = 1;
/// The largest flow header or reply body accepted or produced.
pub const MAX_FLOW_FRAME_BYTES: usize = 16 * 1024;
/// The longest `host:port` a flow may name (a DNS name of 253 characters and a port).
pub const MAX_DEST_LEN: usize = 253 + 2 + 6;
/// The longest reason an [`OpenReply`] carries; longer ones are cut.
pub const MAX_REASON_LEN: usize = 512;

/// Why bytes from a peer are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("the control stream did not start with the mesh greeting (got {0:?})")]
    BadGreeting(Vec<u8>),
    #[error("a frame announced {len} bytes; the limit is {max}")]
    TooLarge { len: usize, max: usize },
    #[error("a frame announced 0 bytes")]
    Empty,
    #[error("the frame ends early: {0}")]
    Truncated(&'static str),
    #[error("{0} bytes follow the end of the frame")]
    TrailingBytes(usize),
    #[error("flow frame version {got} is not supported (this agent speaks {FLOW_VERSION}); run the same release on both agents")]
    UnsupportedVersion { got: u8 },
    #[error("destination {dest:?} is not host:port: {why}")]
    BadDestination { dest: String, why: &'static str },
    #[error("the route names a bad agent: {0}")]
    BadHop(AdvertError),
    #[error("the route has {0} hops; the limit is {MAX_PATH_LEN}")]
    TooManyHops(usize),
    #[error("unknown open reply status {0}")]
    UnknownStatus(u8),
    #[error("text in the frame is not UTF-8")]
    NotUtf8,
    #[error("route message refused: {0}")]
    Message(AdvertError),
}

// ---------------------------------------------------------------------------------------------
// Control stream

/// One route message as it goes on the control stream: length, then the encoded message.
pub fn encode_control_frame(message: &Message) -> Result<Vec<u8>, AdvertError> {
    let body = encode(message)?;
    let len = u32::try_from(body.len()).map_err(|_| AdvertError::TooLarge {
        len: body.len(),
        max: MAX_MESSAGE_BYTES,
    })?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// Cuts the control stream's bytes into messages. Bytes are appended as they arrive and
/// messages taken out whole, so a reader that is cancelled between reads loses nothing. A
/// length over [`MAX_MESSAGE_BYTES`] is refused before its body is read.
#[derive(Debug, Default)]
pub struct ControlDecoder {
    buf: Vec<u8>,
}

impl ControlDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message, `Ok(None)` if more bytes are needed, or why the stream is garbage.
    pub fn next_message(&mut self) -> Result<Option<Message>, FrameError> {
        let Some(head) = self.buf.first_chunk::<4>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*head) as usize;
        if len == 0 {
            return Err(FrameError::Empty);
        }
        if len > MAX_MESSAGE_BYTES {
            return Err(FrameError::TooLarge {
                len,
                max: MAX_MESSAGE_BYTES,
            });
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let message = decode(&self.buf[4..4 + len]).map_err(FrameError::Message);
        self.buf.drain(..4 + len);
        message.map(Some)
    }

    /// Bytes received but not yet part of a whole message.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

// ---------------------------------------------------------------------------------------------
// Flow header and reply

/// The first frame of a flow: where the connection goes, and the agents it must still pass
/// after the receiver (empty when the receiver is the exit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowOpen {
    /// `host:port`, with an IPv6 address in brackets.
    pub dest: String,
    pub route: Vec<AgentId>,
}

impl FlowOpen {
    pub fn new(dest: impl Into<String>, route: Vec<AgentId>) -> Result<Self, FrameError> {
        let dest = dest.into();
        check_dest(&dest)?;
        if route.len() > MAX_PATH_LEN {
            return Err(FrameError::TooManyHops(route.len()));
        }
        Ok(Self { dest, route })
    }

    /// The frame: `u16` length, version, `u16` + destination, `u8` hop count, `u8` + each name.
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        check_dest(&self.dest)?;
        if self.route.len() > MAX_PATH_LEN {
            return Err(FrameError::TooManyHops(self.route.len()));
        }
        let mut body = vec![FLOW_VERSION];
        put_u16_text(&mut body, &self.dest)?;
        body.push(self.route.len() as u8);
        for hop in &self.route {
            let name = hop.as_str().as_bytes();
            let len = u8::try_from(name.len()).map_err(|_| FrameError::TooLarge {
                len: name.len(),
                max: u8::MAX as usize,
            })?;
            body.push(len);
            body.extend_from_slice(name);
        }
        with_length(body)
    }

    /// Decodes a body (the bytes after the length).
    pub fn decode(body: &[u8]) -> Result<Self, FrameError> {
        let mut input = Reader(body);
        check_version(input.u8("version")?)?;
        let dest = input.u16_text("destination")?;
        check_dest(&dest)?;
        let hops = input.u8("hop count")? as usize;
        if hops > MAX_PATH_LEN {
            return Err(FrameError::TooManyHops(hops));
        }
        let mut route = Vec::with_capacity(hops);
        for _ in 0..hops {
            let len = input.u8("hop length")? as usize;
            let name = input.take(len, "hop name")?;
            let name = std::str::from_utf8(name).map_err(|_| FrameError::NotUtf8)?;
            route.push(AgentId::new(name).map_err(FrameError::BadHop)?);
        }
        input.finish()?;
        Ok(Self { dest, route })
    }
}

/// Why an open was refused, so the ingress can answer its client precisely (SOCKS5 reply codes
/// map onto these).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenErrorKind {
    /// A hop has no connection to the next one, or the route is gone.
    NoRoute,
    /// The exit does not advertise this destination.
    NotAllowed,
    ConnectionRefused,
    HostUnreachable,
    NetworkUnreachable,
    TimedOut,
    /// Anything else.
    Failed,
}

impl OpenErrorKind {
    const ALL: [Self; 7] = [
        Self::NoRoute,
        Self::NotAllowed,
        Self::ConnectionRefused,
        Self::HostUnreachable,
        Self::NetworkUnreachable,
        Self::TimedOut,
        Self::Failed,
    ];

    fn code(self) -> u8 {
        match self {
            Self::NoRoute => 1,
            Self::NotAllowed => 2,
            Self::ConnectionRefused => 3,
            Self::HostUnreachable => 4,
            Self::NetworkUnreachable => 5,
            Self::TimedOut => 6,
            Self::Failed => 7,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.code() == code)
    }

    /// What an exit's failed dial means.
    pub fn from_io(error: &std::io::Error) -> Self {
        use std::io::ErrorKind;
        match error.kind() {
            ErrorKind::ConnectionRefused => Self::ConnectionRefused,
            ErrorKind::TimedOut => Self::TimedOut,
            ErrorKind::HostUnreachable => Self::HostUnreachable,
            ErrorKind::NetworkUnreachable => Self::NetworkUnreachable,
            _ => Self::Failed,
        }
    }
}

impl fmt::Display for OpenErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoRoute => "no route",
            Self::NotAllowed => "not allowed",
            Self::ConnectionRefused => "connection refused",
            Self::HostUnreachable => "host unreachable",
            Self::NetworkUnreachable => "network unreachable",
            Self::TimedOut => "timed out",
            Self::Failed => "failed",
        })
    }
}

/// The answer to a [`FlowOpen`]: OPEN-OK, or OPEN-ERR with a kind and a reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenReply {
    Ok,
    Err { kind: OpenErrorKind, reason: String },
}

impl OpenReply {
    /// The frame: `u16` length, version, status (0 = OK, else the error's code), and for an error
    /// `u16` + reason (cut to [`MAX_REASON_LEN`] bytes).
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        let mut body = vec![FLOW_VERSION];
        match self {
            Self::Ok => body.push(0),
            Self::Err { kind, reason } => {
                body.push(kind.code());
                put_u16_text(&mut body, cut(reason, MAX_REASON_LEN))?;
            }
        }
        with_length(body)
    }

    pub fn decode(body: &[u8]) -> Result<Self, FrameError> {
        let mut input = Reader(body);
        check_version(input.u8("version")?)?;
        let reply = match input.u8("status")? {
            0 => Self::Ok,
            code => {
                let kind = OpenErrorKind::from_code(code).ok_or(FrameError::UnknownStatus(code))?;
                let reason = input.u16_text("reason")?;
                if reason.len() > MAX_REASON_LEN {
                    return Err(FrameError::TooLarge {
                        len: reason.len(),
                        max: MAX_REASON_LEN,
                    });
                }
                Self::Err { kind, reason }
            }
        };
        input.finish()?;
        Ok(reply)
    }
}

/// Reads the `u16` length of a flow frame and refuses one that cannot be valid.
pub fn flow_frame_len(head: [u8; 2]) -> Result<usize, FrameError> {
    let len = u16::from_be_bytes(head) as usize;
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > MAX_FLOW_FRAME_BYTES {
        return Err(FrameError::TooLarge {
            len,
            max: MAX_FLOW_FRAME_BYTES,
        });
    }
    Ok(len)
}

fn check_version(version: u8) -> Result<(), FrameError> {
    if version != FLOW_VERSION {
        return Err(FrameError::UnsupportedVersion { got: version });
    }
    Ok(())
}

/// `host:port`: a port that is a number above 0, a host without spaces or control characters,
/// an IPv6 address in brackets. Names are resolved at the exit, so only their shape is checked.
fn check_dest(dest: &str) -> Result<(), FrameError> {
    let bad = |why| FrameError::BadDestination {
        dest: cut(dest, 300).to_owned(),
        why,
    };
    if dest.len() > MAX_DEST_LEN {
        return Err(bad("too long"));
    }
    let (host, port) = dest.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    match port.parse::<u16>() {
        Ok(0) | Err(_) => return Err(bad("the port must be 1 to 65535")),
        Ok(_) => {}
    }
    let host = match host.strip_prefix('[') {
        Some(inner) => {
            let inner = inner.strip_suffix(']').ok_or_else(|| bad("unclosed '['"))?;
            inner
                .parse::<std::net::Ipv6Addr>()
                .map_err(|_| bad("not an IPv6 address in brackets"))?;
            return Ok(());
        }
        None => host,
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if !host.chars().all(allowed) {
        return Err(bad(
            "the host may hold only letters, digits, '-', '_' and '.'",
        ));
    }
    Ok(())
}

fn with_length(body: Vec<u8>) -> Result<Vec<u8>, FrameError> {
    if body.len() > MAX_FLOW_FRAME_BYTES {
        return Err(FrameError::TooLarge {
            len: body.len(),
            max: MAX_FLOW_FRAME_BYTES,
        });
    }
    let mut frame = Vec::with_capacity(2 + body.len());
    frame.extend_from_slice(&(body.len() as u16).to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

fn put_u16_text(body: &mut Vec<u8>, text: &str) -> Result<(), FrameError> {
    let len = u16::try_from(text.len()).map_err(|_| FrameError::TooLarge {
        len: text.len(),
        max: u16::MAX as usize,
    })?;
    body.extend_from_slice(&len.to_be_bytes());
    body.extend_from_slice(text.as_bytes());
    Ok(())
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], FrameError> {
        if self.0.len() < n {
            return Err(FrameError::Truncated(what));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, FrameError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16_text(&mut self, what: &'static str) -> Result<String, FrameError> {
        let head = self.take(2, what)?;
        let len = u16::from_be_bytes([head[0], head[1]]) as usize;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| FrameError::NotUtf8)
    }

    fn finish(self) -> Result<(), FrameError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(FrameError::TrailingBytes(self.0.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::advert::{Advertisement, RouteSpec};

    fn id(name: &str) -> AgentId {
        AgentId::new(name).expect("agent id")
    }

    fn body(frame: &[u8]) -> &[u8] {
        let len = flow_frame_len([frame[0], frame[1]]).expect("length");
        assert_eq!(len, frame.len() - 2);
        &frame[2..]
    }

    fn advert() -> Message {
        Message::Advertise(Advertisement {
            origin: id("exit-1"),
            seq: 7,
            path: vec![id("exit-1")],
            routes: vec![RouteSpec::new("10.0.0.0/8".parse().expect("dest"), 100)],
            ttl_ms: 60_000,
            issued_ms: 1_800_000_000_000,
            proof: crate::OriginProof::default(),
        })
    }

    #[test]
    fn flow_open_round_trips() {
        for open in [
            FlowOpen::new(
                "db.internal.example:5432",
                vec![id("transit-a"), id("exit.eu")],
            ),
            FlowOpen::new("10.1.2.3:80", vec![]),
            FlowOpen::new("[2001:db8::1]:443", vec![id("x")]),
        ] {
            let open = open.expect("valid");
            let frame = open.encode().expect("encode");
            assert_eq!(FlowOpen::decode(body(&frame)), Ok(open));
        }
    }

    #[test]
    fn bad_destinations_are_refused() {
        for dest in [
            "no-port",
            "host:0",
            "host:65536",
            "host:http",
            ":80",
            "[::1:80",
            "[not-v6]:80",
            "sp ace:80",
            "ctl\n:80",
        ] {
            let err = FlowOpen::new(dest, vec![]).expect_err(dest);
            assert!(
                matches!(err, FrameError::BadDestination { .. }),
                "{dest}: {err}"
            );
        }
        let long = format!("{}:80", "a".repeat(MAX_DEST_LEN));
        assert!(FlowOpen::new(long, vec![]).is_err());
    }

    #[test]
    fn garbage_flow_headers_are_refused() {
        let good = FlowOpen::new("example.com:443", vec![id("t")]).expect("valid");
        let frame = good.encode().expect("encode");
        let good_body = body(&frame).to_vec();

        let mut other_version = good_body.clone();
        other_version[0] = 9;
        assert_eq!(
            FlowOpen::decode(&other_version),
            Err(FrameError::UnsupportedVersion { got: 9 })
        );
        for cut_at in 0..good_body.len() {
            let err = FlowOpen::decode(&good_body[..cut_at]).expect_err("truncated");
            assert!(
                matches!(err, FrameError::Truncated(_)),
                "cut at {cut_at}: {err}"
            );
        }
        let mut trailing = good_body.clone();
        trailing.push(0);
        assert_eq!(
            FlowOpen::decode(&trailing),
            Err(FrameError::TrailingBytes(1))
        );

        let mut bad_hop = vec![FLOW_VERSION];
        put_u16_text(&mut bad_hop, "example.com:443").expect("text");
        bad_hop.extend_from_slice(&[1, 2, b'-', b'x']);
        assert!(matches!(
            FlowOpen::decode(&bad_hop),
            Err(FrameError::BadHop(_))
        ));

        let mut too_many = vec![FLOW_VERSION];
        put_u16_text(&mut too_many, "example.com:443").expect("text");
        too_many.push(200);
        assert_eq!(
            FlowOpen::decode(&too_many),
            Err(FrameError::TooManyHops(200))
        );

        let mut not_utf8 = vec![FLOW_VERSION, 0, 2, 0xff, 0xfe];
        not_utf8.push(0);
        assert_eq!(FlowOpen::decode(&not_utf8), Err(FrameError::NotUtf8));

        assert_eq!(flow_frame_len([0, 0]), Err(FrameError::Empty));
        assert!(matches!(
            flow_frame_len([0xff, 0xff]),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(FlowOpen::decode(b"GET / HTTP/1.1\r\n").is_err());
    }

    #[test]
    fn open_replies_round_trip_and_garbage_is_refused() {
        let long_reason = "é".repeat(MAX_REASON_LEN);
        for reply in [
            OpenReply::Ok,
            OpenReply::Err {
                kind: OpenErrorKind::ConnectionRefused,
                reason: "10.0.0.5:80: connection refused".into(),
            },
        ] {
            let frame = reply.encode().expect("encode");
            assert_eq!(OpenReply::decode(body(&frame)), Ok(reply));
        }
        for kind in OpenErrorKind::ALL {
            assert_eq!(OpenErrorKind::from_code(kind.code()), Some(kind));
        }
        let cut_reply = OpenReply::Err {
            kind: OpenErrorKind::Failed,
            reason: long_reason,
        };
        let frame = cut_reply.encode().expect("encode");
        match OpenReply::decode(body(&frame)) {
            Ok(OpenReply::Err { reason, .. }) => assert!(reason.len() <= MAX_REASON_LEN),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            OpenReply::decode(&[FLOW_VERSION, 99, 0, 0]),
            Err(FrameError::UnknownStatus(99))
        );
        assert_eq!(
            OpenReply::decode(&[2, 0]),
            Err(FrameError::UnsupportedVersion { got: 2 })
        );
        assert_eq!(
            OpenReply::decode(&[FLOW_VERSION, 0, 0]),
            Err(FrameError::TrailingBytes(1))
        );
        assert!(matches!(
            OpenReply::decode(&[FLOW_VERSION, 3, 0, 9, b'x']),
            Err(FrameError::Truncated(_))
        ));
    }

    #[test]
    fn control_frames_come_out_whole_across_any_split() {
        let frame = encode_control_frame(&advert()).expect("encode");
        let mut twice = frame.clone();
        twice.extend_from_slice(&frame);
        for split in 0..twice.len() {
            let mut decoder = ControlDecoder::new();
            let mut got = Vec::new();
            decoder.extend(&twice[..split]);
            while let Some(message) = decoder.next_message().expect("valid") {
                got.push(message);
            }
            decoder.extend(&twice[split..]);
            while let Some(message) = decoder.next_message().expect("valid") {
                got.push(message);
            }
            assert_eq!(got, vec![advert(), advert()], "split at {split}");
            assert_eq!(decoder.pending(), 0);
        }
    }

    #[test]
    fn control_garbage_is_refused() {
        let mut decoder = ControlDecoder::new();
        decoder.extend(&[0, 0, 0, 0]);
        assert_eq!(decoder.next_message(), Err(FrameError::Empty));

        // An oversized length is refused before its body arrives.
        let mut decoder = ControlDecoder::new();
        decoder.extend(&u32::MAX.to_be_bytes());
        assert!(matches!(
            decoder.next_message(),
            Err(FrameError::TooLarge { .. })
        ));

        let mut decoder = ControlDecoder::new();
        decoder.extend(&5u32.to_be_bytes());
        decoder.extend(b"hello");
        assert!(matches!(
            decoder.next_message(),
            Err(FrameError::Message(AdvertError::Garbage(_)))
        ));

        let mut decoder = ControlDecoder::new();
        let old = br#"{"version":0,"message":{}}"#;
        decoder.extend(&(old.len() as u32).to_be_bytes());
        decoder.extend(old);
        assert!(matches!(
            decoder.next_message(),
            Err(FrameError::Message(AdvertError::UnsupportedVersion { .. }))
        ));
    }
}
