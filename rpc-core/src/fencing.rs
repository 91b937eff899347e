//! Fencing (Flink's `FencedRpcEndpoint` / `FencedRpcGateway`): a leader that was deposed but
//! still runs must not be obeyed, and callers still talking to it must find out.
//!
//! A gateway declared `#[rpc_gateway(fenced)]` (token type [`FencingId`]) or
//! `#[rpc_gateway(fenced = MyToken)]` is *fenced*: the token type is part of its contract (and
//! of its fingerprint). A proxy to it is made with a token ([`RpcService::gateway_fenced`],
//! [`RpcService::connect_fenced`], or `with_fencing_token` on an existing proxy) and stamps it
//! on every call. An endpoint serving it declares its token type with [`FencedEndpoint`] and
//! holds a *current* token, which it sets on its main thread
//! ([`RpcContext::set_fencing_token`]) as it gains or loses leadership.
//!
//! Each call to a fenced gateway is checked on the endpoint's main thread, right before its
//! handler would run: a call carrying another token than the current one (or arriving while
//! the endpoint has none) fails with [`RpcError::FencingTokenMismatch`], one carrying no token
//! with [`RpcError::FencingTokenMissing`]; the handler does not run. Because the check is
//! made when the call's turn comes, work queued under an old token is refused after a change.
//!
//! Closures queued with `run_async`, `call_async`, `schedule_run_async` and
//! `schedule_call_async` carry the token current when they were queued: after a token change
//! they are dropped (a `call_async` fails with `FencingTokenMismatch`). `run_async_unfenced`
//! and `call_async_unfenced` skip this, for work that must run whatever the token (a
//! leadership change itself). `RpcContext::self_gateway` stamps the current token.
//!
//! [`RpcService::gateway_fenced`]: crate::RpcService::gateway_fenced
//! [`RpcService::connect_fenced`]: crate::RpcService::connect_fenced
//! [`RpcContext::set_fencing_token`]: crate::RpcContext::set_fencing_token

use std::any::Any;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::endpoint::RpcEndpoint;
use crate::error::RpcError;
use crate::gateway::MethodInfo;

/// What a fencing token must be: any comparable, printable, serializable value. Implemented
/// for every such type; [`FencingId`] is the usual choice (or a newtype around it).
///
/// Here the token is a leader's term, named by the gateway (`fenced = Term`) and by the
/// endpoint (`type Token = Term`):
///
/// ```
/// use rpc_core::{BoxError, FencedEndpoint, RpcContext, RpcEndpoint, RpcError, RpcService, rpc_gateway};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
/// pub struct Term(u64);
///
/// #[rpc_gateway(fenced = Term)]
/// pub trait Scheduler {
///     async fn schedule(&mut self, job: String) -> u64;
/// }
///
/// #[derive(Default)]
/// struct Leader { jobs: u64 }
/// impl FencedEndpoint for Leader { type Token = Term; }
/// impl RpcEndpoint for Leader {
///     rpc_core::serves!(Scheduler);
///     async fn on_start(&mut self, ctx: RpcContext<Self>) -> Result<(), BoxError> {
///         ctx.set_fencing_token(Some(Term(7)))?; // elected for term 7
///         Ok(())
///     }
/// }
/// impl Scheduler for Leader {
///     async fn schedule(&mut self, _job: String) -> u64 { self.jobs += 1; self.jobs }
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), RpcError> {
/// let service = RpcService::new();
/// service.start_endpoint("scheduler", Leader::default()).await?;
/// let current: SchedulerClient = service.gateway_fenced("scheduler", Term(7))?;
/// assert_eq!(current.schedule("a".into()).await?, 1);
/// let stale = current.with_fencing_token(Term(6)); // a caller still following term 6
/// let refused = stale.schedule("b".into()).await;
/// assert!(matches!(refused, Err(RpcError::FencingTokenMismatch { expected: Some(t), .. }) if t == "Term(7)"));
/// # Ok(()) }
/// ```
pub trait FencingToken:
    Clone + PartialEq + fmt::Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
}

impl<T> FencingToken for T where
    T: Clone + PartialEq + fmt::Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
}

/// The default fencing token: a random UUID, new for each leadership.
///
/// ```
/// use rpc_core::FencingId;
///
/// let first = FencingId::random();
/// assert_ne!(first, FencingId::random());
/// assert_eq!(FencingId::from_bytes(first.to_bytes()), first);
/// assert_eq!(first.to_string().parse::<FencingId>(), Ok(first));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FencingId([u8; 16]);

impl FencingId {
    /// A fresh token.
    pub fn random() -> FencingId {
        FencingId(uuid::Uuid::new_v4().into_bytes())
    }

    /// The token with these 16 bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> FencingId {
        FencingId(bytes)
    }

    /// Its 16 bytes.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0
    }
}

/// A [`FencingId`] in text that is not one (not a UUID).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a fencing token (a UUID): {0:?}")]
pub struct ParseFencingIdError(String);

/// Reads what `Display` writes: the UUID, hyphenated.
impl std::str::FromStr for FencingId {
    type Err = ParseFencingIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(text)
            .map(|uuid| FencingId(uuid.into_bytes()))
            .map_err(|_| ParseFencingIdError(text.to_owned()))
    }
}

impl fmt::Display for FencingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&uuid::Uuid::from_bytes(self.0), f)
    }
}

impl fmt::Debug for FencingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FencingId({self})")
    }
}

/// The token type of a gateway that is not fenced: its calls carry nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unfenced;

/// An endpoint that serves fenced gateways, and the type of its fencing token.
///
/// ```
/// use rpc_core::{FencedEndpoint, FencingId, RpcEndpoint, rpc_gateway};
///
/// #[rpc_gateway(fenced)]
/// pub trait JobMaster {
///     async fn submit(&mut self, job: String) -> u64;
/// }
///
/// struct Master;
///
/// impl RpcEndpoint for Master {
///     rpc_core::serves!(JobMaster);
/// }
///
/// impl FencedEndpoint for Master {
///     type Token = FencingId;
/// }
///
/// impl JobMaster for Master {
///     async fn submit(&mut self, _job: String) -> u64 {
///         1
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` serves a fenced gateway but does not say what its fencing token is",
    label = "`{Self}` is not a `FencedEndpoint`",
    note = "add `impl rpc_core::FencedEndpoint for {Self} {{ type Token = rpc_core::FencingId; }}` \
            (with the token type the gateway declares in `#[rpc_gateway(fenced = ..)]`)"
)]
pub trait FencedEndpoint: RpcEndpoint {
    /// The token type: the one its fenced gateways declare.
    type Token: FencingToken;
}

/// A token held by an endpoint, its type erased.
trait HeldToken: Any + fmt::Debug + Send + Sync {
    fn as_any(&self) -> &dyn Any;
}

impl<T: Any + fmt::Debug + Send + Sync> HeldToken for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The held token as a `T`, if it is one. (Through `&dyn HeldToken`: an `Arc` holding it is
/// itself a `HeldToken`, whose `as_any` would be the `Arc`.)
fn downcast<T: Any>(held: &dyn HeldToken) -> Option<&T> {
    held.as_any().downcast_ref::<T>()
}

/// An endpoint's current fencing token, and how many times it changed (the *epoch*, which
/// closures queued for the main thread carry).
#[derive(Default)]
pub(crate) struct Fence {
    epoch: AtomicU64,
    current: Mutex<Option<Arc<dyn HeldToken>>>,
}

/// A closure found stale: the token changed since it was queued.
#[derive(Debug)]
pub(crate) struct Stale {
    /// The endpoint's current token (`Debug`), if it has one.
    pub(crate) expected: Option<String>,
}

impl Fence {
    /// The epoch now: closures queued now carry it.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    fn held(&self) -> Option<Arc<dyn HeldToken>> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The current token, if there is one (and it is a `T`).
    pub(crate) fn current<T: FencingToken>(&self) -> Option<T> {
        self.held().and_then(|held| downcast::<T>(&*held).cloned())
    }

    /// Sets the current token; everything stamped before is stale.
    pub(crate) fn set<T: FencingToken>(&self, token: Option<T>) {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        *current = token.map(|token| Arc::new(token) as Arc<dyn HeldToken>);
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether a closure queued at `epoch` may still run; if not, why.
    pub(crate) fn admit_closure(&self, epoch: u64) -> Result<(), Stale> {
        if self.epoch() == epoch {
            return Ok(());
        }
        Err(Stale {
            expected: self.held().map(|held| format!("{held:?}")),
        })
    }

    /// Whether a call to `method` carrying `token` may run now; if not, the error for its
    /// caller.
    pub(crate) fn admit<T: FencingToken>(
        &self,
        token: Option<&T>,
        endpoint: &str,
        method: &MethodInfo,
    ) -> Result<(), RpcError> {
        let Some(token) = token else {
            return Err(RpcError::FencingTokenMissing {
                endpoint: endpoint.to_owned(),
                gateway: method.gateway.to_owned(),
                method: method.name.to_owned(),
            });
        };
        let held = self.held();
        let current = held.as_deref().and_then(downcast::<T>);
        if current == Some(token) {
            return Ok(());
        }
        Err(RpcError::FencingTokenMismatch {
            endpoint: endpoint.to_owned(),
            gateway: method.gateway.to_owned(),
            method: method.name.to_owned(),
            expected: held.map(|held| format!("{held:?}")),
            received: Some(format!("{token:?}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::MethodKind;

    const METHOD: MethodInfo = MethodInfo {
        gateway: "G",
        name: "m",
        kind: MethodKind::Ask,
    };

    #[test]
    fn only_the_current_token_is_admitted() {
        let fence = Fence::default();
        let (first, second) = (FencingId::random(), FencingId::random());
        let refused = fence.admit(Some(&first), "e", &METHOD);
        assert!(
            matches!(
                &refused,
                Err(RpcError::FencingTokenMismatch { expected: None, .. })
            ),
            "no token yet: {refused:?}"
        );
        fence.set(Some(first));
        assert!(fence.admit(Some(&first), "e", &METHOD).is_ok());
        let refused = fence.admit(Some(&second), "e", &METHOD);
        match refused {
            Err(RpcError::FencingTokenMismatch {
                expected: Some(expected),
                received: Some(received),
                ..
            }) => {
                assert_eq!(expected, format!("{first:?}"));
                assert_eq!(received, format!("{second:?}"));
            }
            other => panic!("expected a mismatch, got {other:?}"),
        }
        assert!(matches!(
            fence.admit::<FencingId>(None, "e", &METHOD),
            Err(RpcError::FencingTokenMissing { .. })
        ));
    }

    #[test]
    fn a_change_makes_earlier_closures_stale() {
        let fence = Fence::default();
        let before = fence.epoch();
        assert!(fence.admit_closure(before).is_ok());
        let token = FencingId::random();
        fence.set(Some(token));
        let stale = fence.admit_closure(before).expect_err("stale");
        assert_eq!(stale.expected, Some(format!("{token:?}")));
        assert!(fence.admit_closure(fence.epoch()).is_ok());
        assert_eq!(fence.current::<FencingId>(), Some(token));
        assert_eq!(
            fence.current::<u32>(),
            None,
            "another type is not the token"
        );
    }
}
