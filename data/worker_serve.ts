// The worker side of WorkerPool: answer each request with the handler's result or its error.

export interface WorkerRequest<Req> {
  id: number;
  req: Req;
}

export type WorkerReply<Res> =
  | { id: number; ok: true; res: Res }
  | { id: number; ok: false; error: string; name: string };

/** What a handler returns: the answer and the buffers to move (not copy) back. */
export interface Answer<Res> {
  res: Res;
  transfer?: Transferable[];
}

/** Call once at the top level of a worker module. */
export function serveRequests<Req, Res>(handler: (req: Req) => Promise<Answer<Res>>): void {
  const scope = self as unknown as {
    onmessage: ((e: MessageEvent<WorkerRequest<Req>>) => void) | null;
    postMessage: (msg: unknown, transfer?: Transferable[]) => void;
  };
  scope.onmessage = async (e) => {
    const { id, req } = e.data;
    try {
      const { res, transfer = [] } = await handler(req);
      const reply: WorkerReply<Res> = { id, ok: true, res };
      scope.postMessage(reply, transfer);
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      const name = err instanceof Error ? err.name : "Error";
      const reply: WorkerReply<Res> = { id, ok: false, error, name };
      scope.postMessage(reply);
    }
  };
}
