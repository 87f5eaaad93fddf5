//! The span of one call, and the count of the Redis round trips it made.

use std::future::Future;

use tracing::Instrument;

/// The span of one call, at `DEBUG`: the function, then the outcome and
/// the Redis round trips the call made; the call's own events are inside
/// it. Disabled (the default level of most subscribers), it costs a level
/// check per call, within the noise of the hit benchmark.
pub(crate) fn call_span(function: &str) -> tracing::Span {
    tracing::debug_span!(
        target: "cache_runtime",
        "cached",
        function,
        outcome = tracing::field::Empty,
        round_trips = tracing::field::Empty,
    )
}

tokio::task_local! {
    /// The round trips of the call the task is running, while its span is
    /// enabled.
    static ROUND_TRIPS: std::cell::Cell<u32>;
}

/// Runs a call in its span, counting its round trips into the span; with
/// the span disabled, just runs it. A plain function, not an `async fn`:
/// the call's future is stored once, not once per way of running it.
pub(crate) fn observed<R>(
    span: tracing::Span,
    call: impl Future<Output = R>,
) -> impl Future<Output = R> {
    use futures_util::future::Either;
    if span.is_disabled() {
        return Either::Left(call);
    }
    let recorded = Recorded {
        call,
        span: span.clone(),
    };
    Either::Right(
        ROUND_TRIPS
            .scope(std::cell::Cell::new(0), recorded)
            .instrument(span),
    )
}

pin_project_lite::pin_project! {
    /// A call that records its round trips into its span when it is done
    /// (polled within the scope of [`ROUND_TRIPS`]).
    struct Recorded<F> {
        #[pin]
        call: F,
        span: tracing::Span,
    }
}

impl<F: Future> Future for Recorded<F> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let this = self.project();
        let result = std::task::ready!(this.call.poll(cx));
        this.span
            .record("round_trips", ROUND_TRIPS.with(std::cell::Cell::get));
        std::task::Poll::Ready(result)
    }
}

/// Counts a round trip into the span of the call this task runs, if that
/// span is on (the storage layer calls it for each round trip).
pub(crate) fn count_round_trip() {
    let _ = ROUND_TRIPS.try_with(|n| n.set(n.get() + 1));
}
