//! Teeing a streamed body: frames pass through untouched while the first `cap` bytes, the
//! total length and the SHA-256 of the whole body are recorded. The record is handed over
//! once the body ends, fails, or is dropped half-read, so the publisher always learns what
//! happened without ever holding up the stream.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use shadowdiff_core::CapturedBody;
use shadowdiff_core::event::BodyCapture;

/// A finished capture.
#[derive(Debug)]
pub(crate) struct Captured {
    pub(crate) body: CapturedBody,
    /// False when the stream failed or was abandoned before its end.
    pub(crate) complete: bool,
    pub(crate) finished: Instant,
}

/// Where a finished capture goes; called exactly once.
pub(crate) type OnFinish = Box<dyn FnOnce(Captured) + Send>;

pin_project_lite::pin_project! {
    /// A body that records what passes through it when capturing, and is a plain
    /// pass-through otherwise.
    pub(crate) struct Tee<B: Body> {
        #[pin]
        inner: B,
        capture: Option<(BodyCapture, OnFinish)>,
    }

    impl<B: Body> PinnedDrop for Tee<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // A body that was empty from the start is never polled: it is complete all the same.
            let complete = this.inner.as_ref().get_ref().is_end_stream();
            finish(this.capture, complete);
        }
    }
}

impl<B: Body> Tee<B> {
    /// Wraps `inner`; with `Some((cap, done))` it records up to `cap` bytes and hands the
    /// record to `done`.
    pub(crate) fn new(inner: B, capture: Option<(usize, OnFinish)>) -> Self {
        Self { inner, capture: capture.map(|(cap, done)| (BodyCapture::new(cap), done)) }
    }
}

fn finish(capture: &mut Option<(BodyCapture, OnFinish)>, complete: bool) {
    if let Some((capture, done)) = capture.take() {
        done(Captured { body: capture.finish(), complete, finished: Instant::now() });
    }
}

impl<B> Body for Tee<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let (Some(data), Some((capture, _))) = (frame.data_ref(), this.capture.as_mut()) {
                    capture.update(data);
                }
                // hyper stops polling once a body says it has ended, so finish here rather
                // than waiting for a `None` that may never be asked for.
                if this.inner.is_end_stream() {
                    finish(this.capture, true);
                }
            }
            Some(Err(_)) => finish(this.capture, false),
            None => finish(this.capture, true),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full, StreamBody};
    use std::sync::mpsc;

    /// Tees `inner` with `cap`, and returns where the record arrives.
    fn teed<B: Body>(inner: B, cap: usize) -> (Tee<B>, mpsc::Receiver<Captured>) {
        let (sender, records) = mpsc::channel();
        let done: OnFinish = Box::new(move |captured| sender.send(captured).unwrap());
        (Tee::new(inner, Some((cap, done))), records)
    }

    #[tokio::test]
    async fn passes_everything_and_captures_a_prefix() {
        let chunks: Vec<Result<Frame<Bytes>, std::convert::Infallible>> =
            vec![Ok(Frame::data(Bytes::from_static(b"hello "))), Ok(Frame::data(Bytes::from_static(b"world")))];
        let (tee, capture) = teed(StreamBody::new(futures_util::stream::iter(chunks)), 4);
        let all = tee.collect().await.unwrap().to_bytes();
        assert_eq!(&all[..], b"hello world");
        let captured = capture.try_recv().unwrap();
        assert!(captured.complete);
        assert_eq!(captured.body, CapturedBody::capture(b"hello world", 4));
    }

    #[tokio::test]
    async fn a_body_dropped_half_read_reports_incomplete_and_an_empty_one_complete() {
        let (tee, capture) = teed(Full::new(Bytes::from_static(b"abc")), 10);
        drop(tee);
        let captured = capture.try_recv().unwrap();
        assert!(!captured.complete);
        assert_eq!(captured.body.length, 0);

        let (tee, capture) = teed(http_body_util::Empty::<Bytes>::new(), 10);
        drop(tee);
        let captured = capture.try_recv().unwrap();
        assert!(captured.complete, "an empty body needs no polling to be whole");
    }

    #[tokio::test]
    async fn full_bodies_finish_on_their_last_frame() {
        let (mut tee, capture) = teed(Full::new(Bytes::from_static(b"abc")), 10);
        let frame = tee.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), Bytes::from_static(b"abc"));
        let captured = capture.try_recv().unwrap();
        assert!(captured.complete, "finished without polling past the end");
    }
}
