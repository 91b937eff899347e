//! The floor: a hand-written tokio TCP ping-pong with a 4-byte length prefix.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::stats::{Latencies, Sample, Unit};

/// An echo server: each frame comes back as it was, flushed once no more input is buffered.
pub async fn server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(echo(stream));
        }
    });
    address
}

/// A streaming server: a request is (count: u32, size: u32); the answer is `count` frames of
/// `size` bytes, each length-prefixed, written through a 64 KiB buffer.
pub async fn stream_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let (mut read, write) = stream.into_split();
                let mut write = BufWriter::with_capacity(64 * 1024, write);
                while let (Ok(count), Ok(size)) = (read.read_u32().await, read.read_u32().await) {
                    let item = vec![7u8; size as usize];
                    for _ in 0..count {
                        if write.write_u32(size).await.is_err()
                            || write.write_all(&item).await.is_err()
                        {
                            return;
                        }
                    }
                    if write.flush().await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    address
}

/// `count` items of `size` bytes streamed from the server, read as they come.
pub async fn stream(address: SocketAddr, id: &'static str, count: usize, size: usize) -> Sample {
    let (mut write, read) = {
        let (read, write) = connect(address).await.into_split();
        (write, read)
    };
    let mut read = BufReader::with_capacity(64 * 1024, read);
    let mut item = vec![0u8; size];
    let start = Instant::now();
    write.write_u32(count as u32).await.expect("write");
    write.write_u32(size as u32).await.expect("write");
    for _ in 0..count {
        let length = read.read_u32().await.expect("read") as usize;
        read.read_exact(&mut item[..length]).await.expect("read");
    }
    let elapsed = start.elapsed().as_secs_f64();
    stream_sample(id, count, size, elapsed)
}

/// A stream benchmark's sample: items per second for small items, MB/s for large ones.
pub fn stream_sample(id: &'static str, count: usize, size: usize, elapsed: f64) -> Sample {
    if size >= 64 * 1024 {
        Sample {
            id,
            latency: None,
            rate: (count * size) as f64 / 1e6 / elapsed,
            unit: Unit::MegabytesPerSec,
        }
    } else {
        Sample {
            id,
            latency: None,
            rate: count as f64 / elapsed,
            unit: Unit::ItemsPerSec,
        }
    }
}

async fn echo(stream: TcpStream) -> std::io::Result<()> {
    let (read, write) = stream.into_split();
    let mut read = BufReader::with_capacity(64 * 1024, read);
    let mut write = BufWriter::with_capacity(64 * 1024, write);
    let mut buffer = Vec::new();
    loop {
        let Ok(length) = read.read_u32().await else {
            return Ok(());
        };
        buffer.resize(length as usize, 0);
        read.read_exact(&mut buffer).await?;
        write.write_u32(length).await?;
        write.write_all(&buffer).await?;
        if read.buffer().is_empty() {
            write.flush().await?;
        }
    }
}

async fn connect(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(address).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// One 32-byte call at a time.
pub async fn seq(address: SocketAddr, warmup: usize, n: usize) -> Sample {
    let mut stream = connect(address).await;
    let mut frame = Vec::with_capacity(36);
    frame.extend_from_slice(&32u32.to_be_bytes());
    frame.extend_from_slice(&[7; 32]);
    let mut reply = [0; 36];
    for _ in 0..warmup {
        stream.write_all(&frame).await.expect("write");
        stream.read_exact(&mut reply).await.expect("read");
    }
    let mut latencies = Latencies::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        stream.write_all(&frame).await.expect("write");
        stream.read_exact(&mut reply).await.expect("read");
        latencies.push(t.elapsed());
    }
    Sample {
        id: "raw.seq",
        rate: n as f64 / start.elapsed().as_secs_f64(),
        latency: Some(latencies.percentiles()),
        unit: Unit::CallsPerSec,
    }
}

/// 64 tagged 32-byte calls in flight over one connection.
pub async fn pipe64(address: SocketAddr, n: usize) -> Sample {
    let (read, write) = connect(address).await.into_split();
    let window = Arc::new(Semaphore::new(64));
    let start = Instant::now();
    let writer = {
        let window = Arc::clone(&window);
        tokio::spawn(async move {
            let mut write = BufWriter::new(write);
            for tag in 0..n as u64 {
                if window.available_permits() == 0 {
                    write.flush().await.expect("flush");
                }
                window.acquire().await.expect("permit").forget();
                write.write_u32(32).await.expect("write");
                write.write_u64(tag).await.expect("write");
                write.write_all(&[0; 24]).await.expect("write");
            }
            write.flush().await.expect("flush");
        })
    };
    let mut read = BufReader::new(read);
    let mut rest = [0; 24];
    for expected in 0..n as u64 {
        let _length = read.read_u32().await.expect("read");
        let tag = read.read_u64().await.expect("read");
        read.read_exact(&mut rest).await.expect("read");
        assert_eq!(tag, expected, "raw echo out of order");
        window.add_permits(1);
    }
    writer.await.expect("writer");
    Sample {
        id: "raw.pipe64",
        latency: None,
        rate: n as f64 / start.elapsed().as_secs_f64(),
        unit: Unit::CallsPerSec,
    }
}

/// 1 MiB frames echoed one at a time.
pub async fn bulk1m(address: SocketAddr, warmup: usize, n: usize) -> Sample {
    const SIZE: usize = 1 << 20;
    let mut stream = connect(address).await;
    let payload = vec![7u8; SIZE];
    let mut reply = vec![0u8; SIZE];
    let mut round = async |stream: &mut TcpStream| {
        stream.write_u32(SIZE as u32).await.expect("write");
        stream.write_all(&payload).await.expect("write");
        let length = stream.read_u32().await.expect("read") as usize;
        stream.read_exact(&mut reply[..length]).await.expect("read");
    };
    for _ in 0..warmup {
        round(&mut stream).await;
    }
    let start = Instant::now();
    for _ in 0..n {
        round(&mut stream).await;
    }
    Sample {
        id: "raw.bulk1m",
        latency: None,
        rate: (n * SIZE) as f64 / 1e6 / start.elapsed().as_secs_f64(),
        unit: Unit::MegabytesPerSec,
    }
}
