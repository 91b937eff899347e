//! The handshake, as two state machines that take frames and give frames and an outcome.
//!
//! No sockets and no clocks: the drivers in `client.rs` and `server.rs` read frames (with the
//! small pre-handshake limit, [`HANDSHAKE_MAX_FRAME`]), feed them here, write what comes out,
//! and bound the whole exchange by one deadline. Both sides share these rules, and the unit
//! tests and the fuzz target run them without a network.
//!
//! ```text
//! client                                   server
//!   Hello(version, auth) ------------\  /-- Hello(version, auth)     (both at once)
//!                                     \/
//!   [with a secret]                   /\
//!   KeyExchange(Noise -> psk, e) ----/  \-> check version and mode
//!                               <--------- KeyExchange(Noise <- e, ee)
//!   established: frames from here on travel in encrypted records (channel.rs)
//! ```
//!
//! [`HANDSHAKE_MAX_FRAME`]: crate::protocol::HANDSHAKE_MAX_FRAME

use std::net::SocketAddr;
use std::sync::Arc;

use rpc_core::RpcError;

use crate::auth::{NOISE_PARAMS, PROLOGUE_LABEL, Secret};
use crate::channel::SessionKeys;
use crate::frame::{Frame, FrameKind};
use crate::protocol::{self, AuthMode, PROTOCOL_VERSION, RejectCode};

/// Room for one Noise handshake message (an ephemeral key and an empty payload's tag).
const NOISE_BUFFER: usize = 256;

/// How a connection carries frames once the handshake is done.
#[derive(Debug)]
pub enum Channel {
    /// As they are (no shared secret; TLS, if configured, is below).
    Plain,
    /// Inside encrypted records, under these keys.
    Sealed(SessionKeys),
}

fn mode(secret: Option<&Secret>) -> AuthMode {
    match secret {
        Some(_) => AuthMode::SharedSecret,
        None => AuthMode::None,
    }
}

/// The Noise prologue: both hellos, so that the negotiation cannot be tampered with unseen.
fn prologue(client_hello: &[u8], server_hello: &[u8]) -> Vec<u8> {
    [PROLOGUE_LABEL, client_hello, server_hello].concat()
}

fn noise(
    secret: &Secret,
    prologue: &[u8],
    initiator: bool,
) -> Result<snow::HandshakeState, snow::Error> {
    let params: snow::params::NoiseParams = NOISE_PARAMS.parse()?;
    let builder = snow::Builder::new(params)
        .psk(0, secret.psk())?
        .prologue(prologue)?;
    if initiator {
        builder.build_initiator()
    } else {
        builder.build_responder()
    }
}

fn keys(handshake: snow::HandshakeState) -> Result<SessionKeys, snow::Error> {
    Ok(SessionKeys(Arc::new(
        handshake.into_stateless_transport_mode()?,
    )))
}

/// What the client's machine asks its driver to do after a frame.
#[derive(Debug)]
pub enum ClientStep {
    /// Send this frame and wait for the next one.
    Send(Frame),
    /// The handshake is done.
    Done(Channel),
}

enum ClientState {
    AwaitHello,
    AwaitKeyExchange(Box<snow::HandshakeState>),
    Finished,
}

/// The client's side of the handshake.
pub struct ClientHandshake {
    peer: SocketAddr,
    secret: Option<Secret>,
    hello: Frame,
    state: ClientState,
}

impl ClientHandshake {
    /// A handshake with the server at `peer`, and the `Hello` to send at once.
    pub fn new(peer: SocketAddr, secret: Option<Secret>) -> (ClientHandshake, Frame) {
        let hello = protocol::hello(mode(secret.as_ref()));
        let machine = ClientHandshake {
            peer,
            secret,
            hello: hello.clone(),
            state: ClientState::AwaitHello,
        };
        (machine, hello)
    }

    /// Takes the server's next frame.
    pub fn receive(&mut self, frame: Frame) -> Result<ClientStep, RpcError> {
        let peer = self.peer;
        let unauthenticated = |reason: &str| RpcError::Unauthenticated {
            address: peer,
            reason: reason.to_owned(),
        };
        if frame.kind == FrameKind::HandshakeReject {
            self.state = ClientState::Finished;
            return Err(refusal(&frame.body, peer));
        }
        match std::mem::replace(&mut self.state, ClientState::Finished) {
            ClientState::AwaitHello => {
                if frame.kind != FrameKind::Hello {
                    return Err(RpcError::ConnectFailed {
                        address: peer.to_string(),
                        reason: format!(
                            "the peer is not an rpc service of this protocol: its first frame is \
                             {:?}, not a hello",
                            frame.kind
                        ),
                    });
                }
                let hello = protocol::parse_hello(&frame.body).map_err(|reason| {
                    RpcError::ConnectFailed {
                        address: peer.to_string(),
                        reason: format!(
                            "the peer is not an rpc service of this protocol: {reason}"
                        ),
                    }
                })?;
                if hello.version != PROTOCOL_VERSION {
                    return Err(RpcError::VersionMismatch {
                        address: peer,
                        ours: PROTOCOL_VERSION,
                        theirs: hello.version,
                    });
                }
                match (hello.auth, &self.secret) {
                    (Some(AuthMode::None), None) => Ok(ClientStep::Done(Channel::Plain)),
                    (Some(AuthMode::SharedSecret), None) => Err(unauthenticated(
                        "the server requires a shared secret; give this service the same one \
                         with NettyBuilder::shared_secret",
                    )),
                    (_, Some(_)) if hello.auth != Some(AuthMode::SharedSecret) => {
                        Err(unauthenticated(
                            "the server does not authenticate, and this service (which has a \
                             shared secret) requires it to",
                        ))
                    }
                    (_, Some(secret)) => {
                        let failed =
                            |e: snow::Error| unauthenticated(&format!("key exchange: {e}"));
                        let mut noise =
                            noise(secret, &prologue(&self.hello.body, &frame.body), true)
                                .map_err(failed)?;
                        let mut message = [0; NOISE_BUFFER];
                        let written = noise.write_message(&[], &mut message).map_err(failed)?;
                        self.state = ClientState::AwaitKeyExchange(Box::new(noise));
                        Ok(ClientStep::Send(protocol::key_exchange(
                            &message[..written],
                        )))
                    }
                    (None, None) => Err(RpcError::ConnectFailed {
                        address: peer.to_string(),
                        reason: "the server's hello names no authentication mode".to_owned(),
                    }),
                }
            }
            ClientState::AwaitKeyExchange(mut noise) => {
                if frame.kind != FrameKind::KeyExchange {
                    return Err(RpcError::Disconnected {
                        address: peer,
                        reason: format!(
                            "the server answered the key exchange with a {:?} frame",
                            frame.kind
                        ),
                    });
                }
                let mut payload = [0; NOISE_BUFFER];
                if noise.read_message(&frame.body, &mut payload).is_err() {
                    return Err(unauthenticated(
                        "the server's key exchange does not match this service's shared secret",
                    ));
                }
                let keys =
                    keys(*noise).map_err(|e| unauthenticated(&format!("key exchange: {e}")))?;
                Ok(ClientStep::Done(Channel::Sealed(keys)))
            }
            ClientState::Finished => Err(RpcError::Disconnected {
                address: peer,
                reason: "a frame after the handshake ended".to_owned(),
            }),
        }
    }
}

/// The error a `HandshakeReject` stands for.
fn refusal(body: &bytes::Bytes, peer: SocketAddr) -> RpcError {
    let (theirs, code, reason) = protocol::parse_reject(body);
    match theirs {
        Some(theirs) if theirs != PROTOCOL_VERSION => RpcError::VersionMismatch {
            address: peer,
            ours: PROTOCOL_VERSION,
            theirs,
        },
        _ if code == RejectCode::Unauthenticated as u8 => RpcError::Unauthenticated {
            address: peer,
            reason: format!("the server refused this service: {reason}"),
        },
        _ => RpcError::Disconnected {
            address: peer,
            reason: format!("the server refused the handshake: {reason}"),
        },
    }
}

/// What the server's machine asks its driver to do after a frame.
#[derive(Debug)]
pub enum ServerStep {
    /// Wait for the next frame.
    Continue,
    /// Send `reply` if there is one: the handshake is done.
    Done(Option<Frame>, Channel),
}

/// The server refuses the connection: send `reply` (when the peer speaks this protocol) and
/// close; `reason` is for the log.
#[derive(Debug)]
pub struct Refusal {
    /// The `HandshakeReject` to send, if any.
    pub reply: Option<Frame>,
    /// Why, for the log.
    pub reason: String,
}

impl Refusal {
    fn reject(code: RejectCode, reason: String) -> Refusal {
        Refusal {
            reply: Some(protocol::handshake_reject(code, &reason)),
            reason,
        }
    }

    fn silent(reason: String) -> Refusal {
        Refusal {
            reply: None,
            reason,
        }
    }
}

enum ServerState {
    AwaitHello,
    AwaitKeyExchange(Box<snow::HandshakeState>),
    Finished,
}

/// The server's side of the handshake.
pub struct ServerHandshake {
    secret: Option<Secret>,
    hello: Frame,
    state: ServerState,
}

impl ServerHandshake {
    /// A handshake with a newly accepted peer, and the `Hello` to send at once.
    pub fn new(secret: Option<Secret>) -> (ServerHandshake, Frame) {
        let hello = protocol::hello(mode(secret.as_ref()));
        let machine = ServerHandshake {
            secret,
            hello: hello.clone(),
            state: ServerState::AwaitHello,
        };
        (machine, hello)
    }

    /// Takes the client's next frame.
    pub fn receive(&mut self, frame: Frame) -> Result<ServerStep, Refusal> {
        match std::mem::replace(&mut self.state, ServerState::Finished) {
            ServerState::AwaitHello => {
                if frame.kind != FrameKind::Hello {
                    return Err(Refusal::silent(format!(
                        "the first frame is {:?}, not a hello",
                        frame.kind
                    )));
                }
                let hello = protocol::parse_hello(&frame.body).map_err(Refusal::silent)?;
                if hello.version != PROTOCOL_VERSION {
                    return Err(Refusal::reject(
                        RejectCode::Version,
                        format!(
                            "protocol version mismatch: the client speaks version {}, this \
                             server speaks version {PROTOCOL_VERSION}",
                            hello.version
                        ),
                    ));
                }
                match (hello.auth, &self.secret) {
                    (Some(AuthMode::None), None) => Ok(ServerStep::Done(None, Channel::Plain)),
                    (Some(AuthMode::None), Some(_)) => Err(Refusal::reject(
                        RejectCode::Unauthenticated,
                        "this server requires a shared secret, and the client \
                         has none"
                            .to_owned(),
                    )),
                    (Some(AuthMode::SharedSecret), None) => Err(Refusal::reject(
                        RejectCode::Unauthenticated,
                        "this server has no shared secret, and the client requires one".to_owned(),
                    )),
                    (Some(AuthMode::SharedSecret), Some(secret)) => {
                        let noise = noise(secret, &prologue(&frame.body, &self.hello.body), false)
                            .map_err(|e| Refusal::silent(format!("key exchange: {e}")))?;
                        self.state = ServerState::AwaitKeyExchange(Box::new(noise));
                        Ok(ServerStep::Continue)
                    }
                    (None, _) => Err(Refusal::reject(
                        RejectCode::Malformed,
                        "the hello names no authentication mode".to_owned(),
                    )),
                }
            }
            ServerState::AwaitKeyExchange(mut noise) => {
                if frame.kind != FrameKind::KeyExchange {
                    return Err(Refusal::reject(
                        RejectCode::Unauthenticated,
                        format!(
                            "this server requires a shared secret, and the \
                             client sent a {:?} frame instead of its key exchange",
                            frame.kind
                        ),
                    ));
                }
                let mut payload = [0; NOISE_BUFFER];
                if noise.read_message(&frame.body, &mut payload).is_err() {
                    return Err(Refusal::reject(
                        RejectCode::Unauthenticated,
                        "the client's key exchange does not match this \
                         server's shared secret"
                            .to_owned(),
                    ));
                }
                let failed = |e: snow::Error| Refusal::silent(format!("key exchange: {e}"));
                let mut message = [0; NOISE_BUFFER];
                let written = noise.write_message(&[], &mut message).map_err(failed)?;
                let keys = keys(*noise).map_err(failed)?;
                Ok(ServerStep::Done(
                    Some(protocol::key_exchange(&message[..written])),
                    Channel::Sealed(keys),
                ))
            }
            ServerState::Finished => Err(Refusal::silent(
                "a frame after the handshake ended".to_owned(),
            )),
        }
    }
}

/// Says what a peer that does not speak this protocol seems to be, from the first bytes it
/// sent, for the error a user sees.
pub fn describe_foreign(bytes: &[u8]) -> String {
    if bytes.starts_with(b"HTTP/") {
        let line = bytes
            .split(|b| *b == b'\r' || *b == b'\n')
            .next()
            .unwrap_or_default();
        return format!(
            "the peer is an HTTP server, not an rpc service (it answered `{}`)",
            String::from_utf8_lossy(&line[..line.len().min(64)])
        );
    }
    if let [0x15 | 0x16, 0x03, ..] = bytes {
        return "the peer speaks TLS: it is a TLS server, and this service connects without TLS \
                (give it TlsOptions::trust_roots)"
            .to_owned();
    }
    let shown: Vec<String> = bytes.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!(
        "the peer is not an rpc service of this protocol (it sent {})",
        shown.join(" ")
    )
}

impl std::fmt::Debug for ClientHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientHandshake")
            .field("peer", &self.peer)
            .field("authenticated", &self.secret.is_some())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ServerHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandshake")
            .field("authenticated", &self.secret.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::WireCodec;
    use crate::frame::{DEFAULT_MAX_FRAME, encode_frame};
    use bytes::BytesMut;
    use tokio_util::codec::Decoder;

    fn peer() -> SocketAddr {
        ([127, 0, 0, 1], 7).into()
    }

    /// Runs both machines against each other; returns both outcomes.
    fn run(
        client_secret: Option<&str>,
        server_secret: Option<&str>,
    ) -> (Result<Channel, RpcError>, Result<Channel, Refusal>) {
        let (mut client, client_hello) =
            ClientHandshake::new(peer(), client_secret.map(Secret::new));
        let (mut server, server_hello) = ServerHandshake::new(server_secret.map(Secret::new));
        let mut to_server = vec![client_hello];
        let mut to_client = vec![server_hello];
        let (mut client_done, mut server_done) = (None, None);
        while client_done.is_none() || server_done.is_none() {
            let progressed = !to_server.is_empty() || !to_client.is_empty();
            if let (None, Some(frame)) = (&server_done, to_server.pop()) {
                match server.receive(frame) {
                    Ok(ServerStep::Continue) => {}
                    Ok(ServerStep::Done(reply, channel)) => {
                        to_client.extend(reply);
                        server_done = Some(Ok(channel));
                    }
                    Err(refusal) => {
                        to_client.extend(refusal.reply.clone());
                        server_done = Some(Err(refusal));
                    }
                }
            }
            if let (None, Some(frame)) = (&client_done, to_client.first().cloned()) {
                to_client.remove(0);
                match client.receive(frame) {
                    Ok(ClientStep::Send(frame)) => to_server.push(frame),
                    Ok(ClientStep::Done(channel)) => client_done = Some(Ok(channel)),
                    Err(error) => client_done = Some(Err(error)),
                }
            }
            if !progressed {
                break;
            }
        }
        (
            client_done.expect("the client finished"),
            server_done.unwrap_or_else(|| Err(Refusal::silent("the client gave up".into()))),
        )
    }

    #[test]
    fn plain_peers_agree_without_key_exchange() {
        let (client, server) = run(None, None);
        assert!(matches!(client, Ok(Channel::Plain)));
        assert!(matches!(server, Ok(Channel::Plain)));
    }

    #[test]
    fn peers_with_the_same_secret_share_working_keys() {
        let (client, server) = run(Some("s3cret"), Some("s3cret"));
        let (Ok(Channel::Sealed(client)), Ok(Channel::Sealed(server))) = (client, server) else {
            panic!("both sides should be sealed");
        };
        let (mut client_sealer, mut client_opener) = client.split();
        let (mut server_sealer, server_opener) = server.split();
        // Client to server, a frame larger than a record.
        let frame = Frame::new(FrameKind::Request, 9, vec![7u8; 100_000]);
        let mut plain = BytesMut::new();
        encode_frame(&frame, &mut plain, DEFAULT_MAX_FRAME).unwrap();
        let mut wire = BytesMut::new();
        client_sealer.seal(&plain, &mut wire).unwrap();
        assert!(
            !wire.windows(64).any(|w| w == [7u8; 64]),
            "the plaintext is not visible"
        );
        let mut codec = WireCodec::new(DEFAULT_MAX_FRAME);
        codec.established(DEFAULT_MAX_FRAME, Some(server_opener));
        assert_eq!(codec.decode(&mut wire).unwrap(), Some(frame));
        // And back.
        let reply = Frame::new(FrameKind::Response, 9, &b"ok"[..]);
        let mut plain = BytesMut::new();
        encode_frame(&reply, &mut plain, DEFAULT_MAX_FRAME).unwrap();
        let mut wire = BytesMut::new();
        server_sealer.seal(&plain, &mut wire).unwrap();
        let mut opened = BytesMut::new();
        client_opener.open(&mut wire, &mut opened).unwrap();
        assert_eq!(opened, plain);
    }

    #[test]
    fn tampered_replayed_and_reordered_records_are_refused() {
        let (Ok(Channel::Sealed(client)), Ok(Channel::Sealed(server))) = run(Some("k"), Some("k"))
        else {
            panic!("sealed");
        };
        let (mut sealer, _) = client.split();
        let (_, opener) = server.split();
        let mut first = BytesMut::new();
        sealer.seal(b"first record", &mut first).unwrap();
        let mut second = BytesMut::new();
        sealer.seal(b"second record", &mut second).unwrap();

        let fresh = |opener: &crate::channel::Opener| {
            // Each case gets an opener at nonce 0 with the same keys.
            crate::channel::Opener::clone_for_test(opener)
        };
        let mut plain = BytesMut::new();
        // Altered: one bit flipped in the ciphertext.
        let mut altered = first.clone();
        altered[5] ^= 1;
        assert!(fresh(&opener).open(&mut altered, &mut plain).is_err());
        // Reordered: the second record first.
        assert!(
            fresh(&opener)
                .open(&mut second.clone(), &mut plain)
                .is_err()
        );
        // Replayed: the first record twice.
        let mut replayed = first.clone();
        replayed.extend_from_slice(&first);
        assert!(fresh(&opener).open(&mut replayed, &mut plain).is_err());
        // Injected: a record sealed under other keys.
        let (Ok(Channel::Sealed(other)), _) = run(Some("k"), Some("k")) else {
            unreachable!()
        };
        let mut injected = BytesMut::new();
        other
            .split()
            .0
            .seal(b"first record", &mut injected)
            .unwrap();
        assert!(fresh(&opener).open(&mut injected, &mut plain).is_err());
        // In order, they open.
        let mut both = first.clone();
        both.extend_from_slice(&second);
        let mut plain = BytesMut::new();
        fresh(&opener).open(&mut both, &mut plain).unwrap();
        assert_eq!(&plain[..], b"first recordsecond record");
    }

    #[test]
    fn mismatches_fail_with_errors_that_say_why() {
        let (client, server) = run(None, Some("s"));
        assert!(
            matches!(&client, Err(RpcError::Unauthenticated { reason, .. }) if reason.contains("requires a shared secret")),
            "{client:?}"
        );
        assert!(server.is_err());
        let (client, _) = run(Some("s"), None);
        assert!(
            matches!(&client, Err(RpcError::Unauthenticated { reason, .. }) if reason.contains("does not authenticate")),
            "{client:?}"
        );
        let (client, server) = run(Some("one"), Some("two"));
        assert!(
            matches!(&client, Err(RpcError::Unauthenticated { reason, .. }) if reason.contains("does not match")),
            "{client:?}"
        );
        assert!(matches!(server, Err(Refusal { reason, .. }) if reason.contains("does not match")));
    }

    #[test]
    fn a_peer_of_another_version_is_told_which_this_is() {
        let (mut server, _) = ServerHandshake::new(None);
        let mut body = b"RPCN".to_vec();
        body.extend_from_slice(&2u16.to_be_bytes());
        body.extend_from_slice(&[0x5a; 32]);
        let refusal = server
            .receive(Frame::new(FrameKind::Hello, 0, body))
            .unwrap_err();
        let reply = refusal.reply.expect("a HandshakeReject");
        assert_eq!(reply.kind, FrameKind::HandshakeReject);
        assert_eq!(
            protocol::parse_reject(&reply.body).0,
            Some(PROTOCOL_VERSION)
        );

        let (mut client, _) = ClientHandshake::new(peer(), None);
        let mut body = b"RPCN".to_vec();
        body.extend_from_slice(&9u16.to_be_bytes());
        assert!(matches!(
            client.receive(Frame::new(FrameKind::Hello, 0, body)),
            Err(RpcError::VersionMismatch { theirs: 9, .. })
        ));
    }

    #[test]
    fn foreign_peers_are_described() {
        assert!(describe_foreign(b"HTTP/1.1 400 Bad Request\r\n").contains("HTTP server"));
        assert!(describe_foreign(&[0x15, 0x03, 0x03, 0x00, 0x02]).contains("TLS"));
        assert!(describe_foreign(b"SSH-2.0").contains("53 53 48"));
    }
}
