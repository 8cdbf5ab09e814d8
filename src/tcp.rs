//! The TCP stream fjord reads and writes, a client's and an endpoint's alike: tokio's, except
//! that a vectored write of a little data goes out as one plain write.
//!
//! hyper hands a response's head and body to `writev` as two buffers, a request's head alone as
//! one, and rustls its sealed records likewise. For a few hundred bytes the kernel's vectored
//! path (copying in and checking the buffer list) costs more than joining them here: a small
//! proxied request took 0.2 µs less kernel time with plain writes (BENCHMARKS.md, `a4fe500`).

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Buffers totalling at most this many bytes are joined into one write. Joining copies them,
/// which for more would cost more than the vectored write saves.
const JOIN_AT_MOST: usize = 2048;

thread_local! {
    /// Where buffers are joined: kept per thread, so joining allocates nothing after the first.
    static JOINED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

#[derive(Debug)]
pub(crate) struct Tcp(TcpStream);

impl Tcp {
    pub(crate) fn new(stream: TcpStream) -> Self {
        Self(stream)
    }

    pub(crate) fn get_ref(&self) -> &TcpStream {
        &self.0
    }
}

impl AsyncRead for Tcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tcp {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let stream = Pin::new(&mut self.0);
        if let [one] = bufs {
            return stream.poll_write(cx, one);
        }
        if bufs.iter().map(|b| b.len()).sum::<usize>() > JOIN_AT_MOST {
            return stream.poll_write_vectored(cx, bufs);
        }
        // What is written is counted in the joined bytes, which are the buffers' in order, so
        // the caller advances its buffers just as after a vectored write.
        JOINED.with_borrow_mut(|joined| {
            joined.clear();
            for buf in bufs {
                joined.extend_from_slice(buf);
            }
            stream.poll_write(cx, joined)
        })
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Joined or not, the peer reads the buffers' bytes in order, and the count written covers
    /// them all.
    #[tokio::test]
    async fn vectored_writes_arrive_whole_and_in_order() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut tcp = Tcp::new(TcpStream::connect(addr).await.unwrap());
            let big = vec![b'b'; JOIN_AT_MOST];
            for bufs in [
                vec![IoSlice::new(b"head\r\n"), IoSlice::new(b"body")],
                vec![IoSlice::new(b"one")],
                vec![IoSlice::new(b"a"), IoSlice::new(&big)],
            ] {
                let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
                let mut written = tcp.write_vectored(&bufs).await.unwrap();
                // A short write is finished the way hyper would: with what is left.
                while written < all.len() {
                    written += tcp.write(&all[written..]).await.unwrap();
                }
            }
            tcp.shutdown().await.unwrap();
        });
        let (mut peer, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        client.await.unwrap();
        let mut want = b"head\r\nbodyonea".to_vec();
        want.extend(std::iter::repeat_n(b'b', JOIN_AT_MOST));
        assert_eq!(got, want);
    }
}
