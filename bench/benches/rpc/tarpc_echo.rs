//! tarpc 0.38 over TCP with its bincode transport, TCP_NODELAY set on both sides.

use std::net::SocketAddr;

use futures::StreamExt;
use serde_bytes::ByteBuf;
use tarpc::server::{BaseChannel, Channel};
use tarpc::tokio_serde::formats::Bincode;
use tarpc::tokio_util::codec::LengthDelimitedCodec;
use tarpc::{client, context, serde_transport};
use tokio::net::{TcpListener, TcpStream};

use crate::stats::{Sample, bulk, concurrent, sequential};

#[tarpc::service]
pub trait Echo {
    async fn echo(payload: String) -> String;
    async fn bulk(data: ByteBuf) -> ByteBuf;
}

#[derive(Clone)]
struct EchoServer;

impl Echo for EchoServer {
    async fn echo(self, _: context::Context, payload: String) -> String {
        payload
    }

    async fn bulk(self, _: context::Context, data: ByteBuf) -> ByteBuf {
        data
    }
}

fn framed(stream: TcpStream) -> tarpc::tokio_util::codec::Framed<TcpStream, LengthDelimitedCodec> {
    stream.set_nodelay(true).expect("nodelay");
    LengthDelimitedCodec::builder()
        .max_frame_length(usize::MAX)
        .new_framed(stream)
}

pub async fn server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let transport = serde_transport::new(framed(stream), Bincode::default());
            let channel = BaseChannel::with_defaults(transport);
            tokio::spawn(
                channel
                    .execute(EchoServer.serve())
                    .for_each(|response| async {
                        tokio::spawn(response);
                    }),
            );
        }
    });
    address
}

pub async fn client(address: SocketAddr) -> EchoClient {
    let stream = TcpStream::connect(address).await.expect("connect");
    let transport = serde_transport::new(framed(stream), Bincode::default());
    EchoClient::new(client::Config::default(), transport).spawn()
}

pub async fn seq(client: &EchoClient, warmup: usize, n: usize) -> Sample {
    let payload = "x".repeat(32);
    sequential("tarpc.seq", warmup, n, |_| {
        let (client, payload) = (client.clone(), payload.clone());
        async move {
            client
                .echo(context::current(), payload)
                .await
                .expect("echo");
        }
    })
    .await
}

pub async fn pipe64(client: &EchoClient, warmup: usize, n: usize) -> Sample {
    let client = client.clone();
    concurrent("tarpc.pipe64", 64, warmup / 64, n / 64, move |_| {
        let client = client.clone();
        async move {
            client
                .echo(context::current(), "x".repeat(32))
                .await
                .expect("echo");
        }
    })
    .await
}

pub async fn bulk1m(client: &EchoClient, warmup: usize, n: usize) -> Sample {
    let data = ByteBuf::from(vec![7u8; 1 << 20]);
    bulk("tarpc.bulk1m", warmup, n, 1 << 20, data, |data| {
        let client = client.clone();
        async move {
            let back = client.bulk(context::current(), data).await.expect("bulk");
            assert_eq!(back.len(), 1 << 20);
            back
        }
    })
    .await
}
