import { Writable } from 'node:stream';

/** A log stream for a test server that keeps every line, to assert on what was (not) logged. */
export function captureLogs(): { stream: Writable; text(): string } {
  let text = '';
  const stream = new Writable({
    write(chunk, _encoding, done) {
      text += chunk.toString();
      done();
    },
  });
  return { stream, text: () => text };
}
