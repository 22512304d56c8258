// Resumable subscriptions for the npm `graphql-ws` client (graphql-transport-ws), against an
// anyql server: see docs/subscriptions.md, "Resuming after a reconnect".
//
// anyql puts the id of each event in the result's `extensions.eventId` when the source
// yields `anyql.Event(value, id)`, and resumes a subscription after the id a `subscribe`
// carries in `extensions.lastEventId`. The graphql-ws client reconnects on its own
// (`retryAttempts`, `retryWait`) and then sends each active subscription's payload again;
// it serialises the payload object every time it sends it, so updating that object's
// `extensions.lastEventId` as results arrive is enough for the resent `subscribe` to resume
// where the client left off: no duplicate, no gap (as far as the server still retains the
// events; otherwise the subscription ends with an error whose `extensions.code` is
// `RESUME_POINT_EXPIRED`, and the application refetches and subscribes afresh).
//
// No dependencies: it takes the client you made with `createClient`.

/**
 * Subscribe through a graphql-ws `client` so that a reconnect resumes after the last event
 * received instead of starting again from now.
 *
 * @param {import("graphql-ws").Client} client a client from graphql-ws's `createClient`.
 * @param {{query: string, operationName?: string | null, variables?: Record<string, unknown> | null,
 *   extensions?: Record<string, unknown> | null}} payload the operation, as for
 *   `client.subscribe`; it is copied, not changed.
 * @param {import("graphql-ws").Sink} sink gets every result (with its `extensions.eventId`),
 *   the error and the completion, as with `client.subscribe`.
 * @param {{lastEventId?: string | null, onEventId?: (id: string) => void}} [options]
 *   `lastEventId`: resume after this id from the start (one you stored, say);
 *   `onEventId`: called with each new id (to store it across page loads).
 * @returns {(() => void) & {lastEventId: () => string | null}} disposes of the
 *   subscription, like `client.subscribe`'s return value; `.lastEventId()` is the last id
 *   received (or the one given), to resume with later.
 */
export function subscribeResumable(client, payload, sink, options = {}) {
  let lastEventId = options.lastEventId ?? null;
  // Our own copy: graphql-ws sends this very object again on every reconnect.
  const request = { ...payload, extensions: { ...(payload.extensions ?? {}) } };
  if (lastEventId !== null) request.extensions.lastEventId = lastEventId;
  const dispose = client.subscribe(request, {
    next(result) {
      const id = result?.extensions?.eventId;
      if (typeof id === "string") {
        lastEventId = id;
        request.extensions = { ...request.extensions, lastEventId: id };
        options.onEventId?.(id);
      }
      sink.next(result);
    },
    error: (error) => sink.error(error),
    complete: () => sink.complete(),
  });
  const disposer = () => dispose();
  disposer.lastEventId = () => lastEventId;
  return disposer;
}
