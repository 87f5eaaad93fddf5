//! Bodies: the one the layer answers with, and reading a handler's body
//! into memory only while it stays under the bound.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};

/// The error of a body the layer passes on.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of a response from a [`CacheService`](super::CacheService).
pub type CacheBody = UnsyncBoxBody<Bytes, BoxError>;

pub(crate) fn boxed<B>(body: B) -> CacheBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

pub(crate) fn full(bytes: impl Into<Bytes>) -> CacheBody {
    boxed(Full::new(bytes.into()).map_err(|e: Infallible| match e {}))
}

/// The length of a body, when it is known before it is read: its
/// `Content-Length`, or the exact size its body reports. `None` for an
/// event stream, which is never read ahead.
pub(crate) fn known_length<B: Body>(headers: &HeaderMap, body: &B) -> Option<u64> {
    let stream = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
    if stream {
        return None;
    }
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse().ok())
        .or_else(|| body.size_hint().exact())
}

/// A body read by [`read_bounded`].
pub(crate) enum Read {
    /// The whole body, within the bound.
    Whole(Bytes),
    /// Longer than the bound: what was read, then the rest as it comes.
    Longer(CacheBody),
    /// It failed: what was read, then its error, for the client.
    Failed(CacheBody),
}

/// Reads `body` while it stays within `max` bytes: at most `max` bytes
/// and one frame are ever held.
pub(crate) async fn read_bounded(body: CacheBody, max: usize) -> Read {
    let mut body = body;
    let mut read = BytesMut::new();
    loop {
        match body.frame().await {
            None => return Read::Whole(read.freeze()),
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue; // trailers are not kept
                };
                read.extend_from_slice(&data);
                if read.len() > max {
                    return Read::Longer(boxed(Prefixed {
                        prefix: Some(read.freeze()),
                        rest: body,
                    }));
                }
            }
            Some(Err(error)) => {
                tracing::warn!(target: "cache_runtime", %error, "response body failed; not cached");
                let rest = boxed(Failing(Some(error)));
                return Read::Failed(boxed(Prefixed {
                    prefix: Some(read.freeze()),
                    rest,
                }));
            }
        }
    }
}

/// Bytes already read, then the rest of the body.
struct Prefixed {
    prefix: Option<Bytes>,
    rest: CacheBody,
}

impl Body for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(prefix) = self.prefix.take().filter(|p| !p.is_empty()) {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.rest.size_hint();
        let before = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        hint.set_lower(hint.lower().saturating_add(before));
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper.saturating_add(before));
        }
        hint
    }
}

/// A body that fails with the handler's body's error.
struct Failing(Option<BoxError>);

impl Body for Failing {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.take().map(Err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_longer_body_keeps_every_byte_and_holds_at_most_the_bound() {
        let chunks: Vec<Result<Frame<Bytes>, BoxError>> = (0..10)
            .map(|i| Ok(Frame::data(Bytes::from(vec![i as u8; 100]))))
            .collect();
        let body = boxed(http_body_util::StreamBody::new(futures_util::stream::iter(
            chunks,
        )));
        match read_bounded(body, 250).await {
            Read::Longer(rest) => {
                let all = rest.collect().await.unwrap().to_bytes();
                assert_eq!(all.len(), 1000);
                assert_eq!(all[999], 9);
            }
            _ => panic!("not longer"),
        }
        match read_bounded(full("abc"), 3).await {
            Read::Whole(b) => assert_eq!(&b[..], b"abc"),
            _ => panic!("not whole"),
        }
    }
}
