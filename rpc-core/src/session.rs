//! Player sessions: who a relayed call is from, as the Gate that relayed it vouches.
//!
//! A player connects to a Gate's *outer* listener and logs in; the Gate's login handler opens
//! a [`Session`] on the player's connection ([`Peer::open_session`](crate::Peer::open_session)).
//! From then on, every call the player makes through a relay ([`RpcService::start_relay`](crate::RpcService::start_relay))
//! reaches the hosting server with that session attached, and the handler there reads it from
//! [`CallContext::session`](crate::CallContext::session) (the call's caller is
//! [`Caller::Relayed`](crate::Caller::Relayed)).

use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

/// One player's session on a Gate: the identity the Gate gave it at login, and a number no
/// other session of that Gate has (so that two logins of one player can be told apart).
///
/// ```
/// use rpc_core::Session;
///
/// let session = Session::new("player-7");
/// assert_eq!(session.identity(), "player-7");
/// assert_ne!(session.id(), Session::new("player-7").id());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Session {
    pub(crate) identity: String,
    pub(crate) id: u64,
}

impl Session {
    /// A new session for the player `identity` (a user id, as the Gate's login established
    /// it), with a fresh random id.
    pub fn new(identity: impl Into<String>) -> Session {
        Session {
            identity: identity.into(),
            id: uuid::Uuid::new_v4().as_u64_pair().0,
        }
    }

    /// Who the player is, as the Gate vouches.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// This session's number, unique among its Gate's sessions.
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl fmt::Display for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "session {:016x} of `{}`", self.id, self.identity)
    }
}

/// The session opened on one connection, shared by every clone of its [`Peer`](crate::Peer);
/// it takes no part in comparing peers.
#[derive(Clone, Default)]
pub(crate) struct SessionCell(pub(crate) Arc<OnceLock<Arc<Session>>>);

impl PartialEq for SessionCell {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for SessionCell {}

impl fmt::Debug for SessionCell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.get() {
            Some(session) => write!(f, "Some({session})"),
            None => f.write_str("None"),
        }
    }
}
