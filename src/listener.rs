//! Listeners: binding entry point addresses and the accept loop, which stops on shutdown.
//! A socket is bound once and accepted from by every worker (see [`crate::workers`]).

use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Address;
use crate::throttle;

/// Binds `address`. `:PORT` is every IPv6 and IPv4 address, or every IPv4 address where the
/// host has no IPv6.
pub(crate) async fn bind(address: Address) -> std::io::Result<TcpListener> {
    match address {
        Address::Socket(addr) => TcpListener::bind(addr).await,
        Address::Any(port) => match TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)).await {
            Ok(l) => Ok(l),
            Err(_) => TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).await,
        },
    }
}

/// Accepts connections on this thread's runtime until `shutdown`, handing each to `serve` as a
/// task of `tracker`. `listener` is a handle on a socket other workers may accept from too.
pub(crate) async fn accept<F, Fut>(
    listener: std::net::TcpListener,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    serve: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let address = listener.local_addr().ok();
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(address = ?address, error = %e, "cannot accept on this worker");
            return;
        }
    };
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tracker.spawn(serve(stream, peer));
                }
                Err(e) => {
                    // Out of file descriptors, mostly: back off rather than spin.
                    if let Some(held_back) = throttle::admit(&format!("accept: {}", e.kind())) {
                        tracing::warn!(error = %e, held_back, "accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}
