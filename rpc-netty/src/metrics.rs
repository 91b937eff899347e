//! Connection metrics through the `metrics` facade (feature `metrics`, which also turns on
//! rpc-core's call metrics). Without the feature these are empty.
//!
//! | name | kind | labels | what |
//! | --- | --- | --- | --- |
//! | `rpc_connections_total` | counter | `direction` | connections established (`inbound` or `outbound`: handshake done) |
//! | `rpc_connections_open` | gauge | `direction` | established connections open now |
//! | `rpc_connections_refused_total` | counter | `reason` | inbound connections closed before they were established: `max_connections`, `handshake_failed`, `handshake_timeout`, `evicted` (pushed out of the handshake budget by newer ones) |

/// One established connection: counted when made, and open until dropped.
pub(crate) struct Open {
    #[cfg(feature = "metrics")]
    open: ::metrics::Gauge,
}

/// A connection going `direction` (`inbound` or `outbound`) was established.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn established(direction: &'static str) -> Open {
    #[cfg(feature = "metrics")]
    {
        ::metrics::counter!("rpc_connections_total", "direction" => direction).increment(1);
        let open = ::metrics::gauge!("rpc_connections_open", "direction" => direction);
        open.increment(1.0);
        Open { open }
    }
    #[cfg(not(feature = "metrics"))]
    Open {}
}

#[cfg(feature = "metrics")]
impl Drop for Open {
    fn drop(&mut self) {
        self.open.decrement(1.0);
    }
}

/// An inbound connection was closed before it was established, for `reason`.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn refused(reason: &'static str) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!("rpc_connections_refused_total", "reason" => reason).increment(1);
}
