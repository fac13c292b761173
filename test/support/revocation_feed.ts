import type { TestServer } from './test_server.js';

export interface FeedEvent {
  event: string;
  data: string;
  id?: string;
}

/** Reads SSE events from a streaming response until `until` says stop or the timeout passes, then cancels it. */
export async function readEvents(response: Response, until: (events: FeedEvent[]) => boolean, timeoutMs = 3000): Promise<FeedEvent[]> {
  const events: FeedEvent[] = [];
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  const deadline = Date.now() + timeoutMs;
  while (!until(events) && Date.now() < deadline) {
    const chunk = await Promise.race([reader.read(), new Promise<null>((r) => setTimeout(() => r(null), deadline - Date.now()))]);
    if (!chunk || chunk.done) break;
    buffer += chunk.value;
    for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const fields = Object.fromEntries(block.split('\n').map((line) => [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 2)]));
      events.push({ event: fields.event ?? 'message', data: fields.data ?? '', id: fields.id });
      if (until(events)) break;
    }
  }
  await reader.cancel().catch(() => {});
  return events;
}

/** The session ids of the `revoked` events. */
export function revokedIds(events: FeedEvent[]): string[] {
  return events.filter((e) => e.event === 'revoked').map((e) => (JSON.parse(e.data) as { session_id: string }).session_id);
}

/** Pages the JSON feed from `since` until `more` is false; returns every row and the last cursor. */
export async function pageAll(url: string, since?: string, headers: Record<string, string> = {}) {
  const rows: { session_id: string; revoked_at: string; remember_until: string }[] = [];
  let cursor = since;
  let pages = 0;
  for (;;) {
    const response = await fetch(`${url}/auth/revocations${cursor === undefined ? '' : `?since=${encodeURIComponent(cursor)}`}`, { headers });
    if (response.status !== 200) throw new Error(`feed answered ${response.status}: ${await response.text()}`);
    const page = (await response.json()) as { revocations: typeof rows; cursor: string; more: boolean };
    rows.push(...page.revocations);
    cursor = page.cursor;
    pages += 1;
    if (!page.more) return { rows, cursor, pages };
  }
}

/**
 * Gives `userId` `count` more live sessions in one statement: the setup of a large
 * backlog (a login each would spend argon2 on every one). The revocations that make
 * the backlog go through the server's own routes.
 */
export async function addSessions(t: TestServer, userId: string, count: number): Promise<void> {
  const now = new Date(t.server.context.now());
  await t.server.context.store.db.query(
    `INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, refresh_hash, refresh_issued_at, refresh_expires_at)
     SELECT gen_random_uuid(), $1, $2, $2, $3, md5(random()::text), $2, $3 FROM generate_series(1, $4)`,
    [userId, now, new Date(now.getTime() + 86_400_000), count],
  );
}
