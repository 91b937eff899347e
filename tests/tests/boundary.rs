//! The public boundary: one error type from binding to calling, addresses in any of their
//! usual forms, and `Debug` on what a user holds.

mod common;

use std::net::{Ipv4Addr, SocketAddr};

use common::bounded;
use rpc_core::{RpcEndpoint, RpcError, RpcService, rpc_gateway};

#[rpc_gateway]
pub trait Echo {
    async fn echo(&mut self, text: String) -> String;
}

struct Parrot;

impl RpcEndpoint for Parrot {
    rpc_core::serves!(Echo);
}

impl Echo for Parrot {
    async fn echo(&mut self, text: String) -> String {
        text
    }
}

/// `bind`, `connect`, `start_endpoint` and calls all fail with `RpcError`, so `?` works in a
/// function that returns it.
async fn serve_and_call() -> Result<String, RpcError> {
    let server = rpc_netty::bind("127.0.0.1:0").await?;
    server.start_endpoint("echo", Parrot).await?;
    let client = rpc_netty::client();
    let echo: EchoClient = client.connect(server.local_address()?, "echo").await?;
    let reply = echo.echo("one error type".into()).await?;
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
    Ok(reply)
}

#[tokio::test]
async fn one_error_type_from_bind_to_call() {
    assert_eq!(bounded(serve_and_call()).await.unwrap(), "one error type");
}

#[tokio::test]
async fn an_address_in_use_is_an_io_error_that_names_it() {
    bounded(async {
        let first = rpc_netty::bind("127.0.0.1:0").await.unwrap();
        let taken = first.local_address().unwrap();
        let error = rpc_netty::bind(taken).await.unwrap_err();
        let RpcError::Io { context, source } = &error else {
            panic!("expected RpcError::Io, got {error:?}");
        };
        assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
        assert!(context.contains(&taken.to_string()), "{context}");
        assert!(
            error.to_string().starts_with("cannot listen on 127.0.0.1:"),
            "{error}"
        );
        first.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_client_has_no_local_address() {
    bounded(async {
        let client = rpc_netty::client();
        assert!(matches!(
            client.local_address(),
            Err(RpcError::NotListening)
        ));
        assert!(matches!(
            RpcService::new().local_address(),
            Err(RpcError::NotListening)
        ));
        client.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn connect_takes_every_form_of_address() {
    bounded(async {
        let server = rpc_netty::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        server.start_endpoint("echo", Parrot).await.unwrap();
        let address: SocketAddr = server.local_address().unwrap();
        let client = rpc_netty::client();
        let text = address.to_string();
        let by_socket: EchoClient = client.connect(address, "echo").await.unwrap();
        let by_ref: EchoClient = client.connect(&address, "echo").await.unwrap();
        let by_str: EchoClient = client.connect(text.as_str(), "echo").await.unwrap();
        let by_string: EchoClient = client.connect(&text, "echo").await.unwrap();
        let by_pair: EchoClient = client
            .connect(("127.0.0.1", address.port()), "echo")
            .await
            .unwrap();
        for echo in [by_socket, by_ref, by_str, by_string, by_pair] {
            assert_eq!(echo.echo("x".into()).await.unwrap(), "x");
        }
        client.shutdown().await.unwrap();
        server.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn what_a_user_holds_can_be_debug_printed() {
    bounded(async {
        let service = RpcService::new();
        service.start_endpoint("echo", Parrot).await.unwrap();
        let echo: EchoClient = service.gateway("echo").unwrap();
        let call = echo.echo("x".into());
        let printed = format!("{service:?} {call:?} {echo:?}");
        assert!(printed.contains("RpcService"), "{printed}");
        assert!(printed.contains("endpoints: [\"echo\"]"), "{printed}");
        assert!(printed.contains("RpcCall"), "{printed}");
        assert!(printed.contains("method: \"echo\""), "{printed}");
        assert_eq!(call.await.unwrap(), "x");
        service.shutdown().await.unwrap();
    })
    .await;
}
