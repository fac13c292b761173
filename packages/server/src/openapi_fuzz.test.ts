import assert from 'node:assert/strict';
import { Agent, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { errorCodes } from '@tessera/protocol';
import { startSmtpServer, type TestSmtpServer } from '../../../test/support/smtp_server.js';
import { startTestServer, type TestServer, uniqueName } from '../../../test/support/test_server.js';
import { openSession } from './flows/login.js';
import { normalizeUsername } from './flows/usernames.js';
import type { UserRecord } from './store/records.js';

/*
 * Every operation of /openapi.json, driven by its own schema: valid requests and a
 * batch of hostile ones (wrong types, missing and extra fields, huge and unicode-edge
 * strings, malformed JSON, wrong content types, garbage path, query and header
 * parameters), with and without the credentials its `security` names. Whatever comes
 * in, the answer is never a 5xx, its status is one the operation declares, and every
 * error is the contract's {error, message} (OAuth's {error, error_description} for the
 * form grant) with a code the declared response lists, echoing nothing of the input.
 * And a request the schema accepts is never refused as malformed (400 invalid_request
 * or weak_password): the server's rules are in its published schemas.
 *
 * Deterministic: a seeded PRNG (mulberry32) picks every value. FUZZ_SEED=<n> runs
 * another seed, FUZZ_DEBUG=1 prints every request and answer; a failure names the
 * seed and the case.
 */

const SEED = Number(process.env.FUZZ_SEED ?? 0x7e55e4a);
/** Random cases per operation on top of the systematic ones. */
const RANDOM_CASES = 30;

/** mulberry32: a tiny, well-mixed 32-bit PRNG. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const random = mulberry32(SEED);
const int = (min: number, max: number): number => min + Math.floor(random() * (max - min + 1));
const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
const chance = (p: number): boolean => random() < p;
const stringOf = (alphabet: string, length: number): string => Array.from({ length }, () => pick([...alphabet])).join('');

/** In every hostile value: a response that contains it echoed the input. */
const MARK = `zqx${stringOf('abcdefghijklmnopqrstuvwxyz', 10)}qxz`;

// ---------------------------------------------------------------- OpenAPI shapes

interface Schema {
  $ref?: string;
  type?: string | string[];
  properties?: Record<string, Schema>;
  required?: string[];
  additionalProperties?: boolean | Schema;
  items?: Schema;
  enum?: unknown[];
  anyOf?: Schema[];
  oneOf?: Schema[];
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  examples?: unknown[];
  format?: string;
}

interface Parameter {
  name: string;
  in: 'path' | 'query' | 'header' | 'cookie';
  required?: boolean;
  schema: Schema;
}

interface Operation {
  operationId: string;
  security?: Record<string, string[]>[];
  parameters?: Parameter[];
  requestBody?: { required?: boolean; content: Record<string, { schema: Schema }> };
  responses: Record<string, { description?: string }>;
}

interface Document {
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, Schema> };
}

// ---------------------------------------------------------------- HTTP

interface Request {
  label: string;
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string | Buffer;
  /** The OAuth form grant: errors are OAuth's. */
  form: boolean;
  /** Body, path and query all generated as the schema says: a 400 invalid_request means the schema lied. */
  valid: boolean;
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
}

const agent = new Agent({ keepAlive: true, maxSockets: 4 });

/** node:http rather than fetch: it sends what it is told (GET bodies, raw paths, odd content types). */
function send(base: URL, req: Request): Promise<Answer> {
  const headers = { ...req.headers };
  if (req.body !== undefined) headers['content-length'] = String(Buffer.byteLength(req.body));
  return new Promise((resolve, reject) => {
    const r = httpRequest({ host: base.hostname, port: base.port, method: req.method, path: req.path, headers, agent }, (res) => {
      if (String(res.headers['content-type']).startsWith('text/event-stream')) {
        // A revocation stream never ends: its status and headers are what is checked.
        res.destroy();
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text: '' });
        return;
      }
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    r.setTimeout(15_000, () => r.destroy(new Error(`no answer to ${req.label}`)));
    r.on('error', reject);
    r.end(req.body);
  });
}

// ---------------------------------------------------------------- credentials

interface Pair {
  access_token: string;
  refresh_token: string;
  session_id: string;
}

/**
 * One user per operation. A pair is reused by reads and dropped after any other
 * request, which may have ended its session (logout, refresh, password change).
 * Sessions are opened by the login flow itself, without paying argon2id each time;
 * a fuzzed password change may succeed: then a new user takes over.
 */
class Credentials {
  #pair: Promise<Pair> | undefined;
  #victim: Promise<string> | undefined;
  #hash = '';
  readonly password = 'fuzzing passphrase';
  username = '';
  constructor(private readonly t: TestServer) {}

  static async create(t: TestServer): Promise<Credentials> {
    const creds = new Credentials(t);
    await creds.#register();
    return creds;
  }

  async #register(): Promise<void> {
    this.username = uniqueName('fuzz');
    const res = await this.t.call('POST', '/auth/register', { body: { username: this.username, password: this.password } });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    // An admin, so the admin API is fuzzed past its role check (non-admins get 403 there).
    await this.t.server.context.store.users.setRoles({ user: { username: this.username }, roles: ['admin'], now: new Date(this.t.clock.now()), audit: {} });
    this.#hash = (await this.#user()).passwordHash;
  }

  async #user(): Promise<UserRecord> {
    const user = await this.t.server.context.store.users.findByUsername(this.username);
    assert.ok(user, 'the fuzzing user exists');
    return user;
  }

  async #login(): Promise<Pair> {
    let user = await this.#user();
    if (user.passwordHash !== this.#hash) {
      await this.#register();
      user = await this.#user();
    }
    const pair = await openSession(this.t.server.context, user, { ip: '127.0.0.1', userAgent: 'openapi fuzz' });
    return pair.body as Pair;
  }

  pair(): Promise<Pair> {
    this.#pair ??= this.#login();
    return this.#pair;
  }

  /** Another live session of the same user: a real `{id}` for the session routes. */
  victim(): Promise<string> {
    this.#victim ??= this.#login().then((p) => p.session_id);
    return this.#victim;
  }

  spend(): void {
    this.#pair = undefined;
    this.#victim = undefined;
  }
}

// ---------------------------------------------------------------- values

const HOSTILE_STRINGS: [string, string][] = [
  ['huge', `${MARK}${'A'.repeat(5000)}`],
  ['nul', `a\u0000${MARK}`],
  ['lone high surrogate', `\uD800${MARK}`],
  ['lone low surrogate', `${MARK}\uDC00`],
  ['rtl override', `\u202E${MARK}\u202Dabc`],
  ['zero width', `a\u200Bb\u200D${MARK}`],
  ['fullwidth', `ＡＢＣ＠ｅｘａｍｐｌｅ．ｃｏｍ${MARK}`],
  ['bom', `\uFEFF${MARK}`],
  ['combining', `e\u0301\u0301\u0301${MARK}`],
  ['emoji', `👩‍👩‍👧‍👦${MARK}`],
  ['nfkc expansion', `${'\uFDFA'.repeat(300)}${MARK}`],
  ['NaN', 'NaN'],
  ['Infinity', 'Infinity'],
  ['minus zero', '-0'],
  ['1e309', '1e309'],
  ['null word', 'null'],
  ['hex', '0x10'],
  ['sql', `' OR 1=1 --${MARK}`],
  ['markup', `<script>${MARK}</script>`],
  ['traversal', `../../${MARK}`],
  ['percent', `%00%ZZ${MARK}`],
  ['crlf', `a\r\nX-Injected: ${MARK}`],
  ['empty', ''],
  ['spaces', '   '],
];

const deep = (levels: number): unknown => {
  let value: unknown = MARK;
  for (let i = 0; i < levels; i++) value = { a: value };
  return value;
};

const HOSTILE_VALUES: [string, unknown][] = [
  ['zero', 0],
  ['negative', -1],
  ['float', 1.5],
  ['huge number', 1e308],
  ['true', true],
  ['false', false],
  ['null', null],
  ['empty array', []],
  ['array', [MARK, MARK]],
  ['empty object', {}],
  ['nested object', deep(40)],
  ...HOSTILE_STRINGS,
];

/** Raw request bodies that are not what any schema describes. */
const RAW_BODIES: [string, string | Buffer][] = [
  ['truncated object', '{'],
  ['truncated member', '{"a":'],
  ['truncated array', '[1,2'],
  ['bare word', 'nul'],
  ['trailing comma', '{"a":1,}'],
  ['two documents', '{"a":1}{"b":2}'],
  ['bom before json', '\uFEFF{}'],
  ['escaped lone surrogate', `{"${MARK}":"\\ud800"}`],
  ['escaped nul', '{"a":"\\u0000"}'],
  ['number overflow', '{"a":1e99999}'],
  ['__proto__', '{"__proto__":{"polluted":1}}'],
  ['constructor.prototype', '{"constructor":{"prototype":{"polluted":1}}}'],
  ['deep arrays', `${'['.repeat(5000)}${']'.repeat(5000)}`],
  ['deep objects', `${'{"a":'.repeat(2000)}1${'}'.repeat(2000)}`],
  ['invalid utf-8', Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d])],
  ['null', 'null'],
  ['array', '[]'],
  ['string', `"${MARK}"`],
  ['number', '123'],
  ['boolean', 'true'],
  ['array of objects', '[{}]'],
  ['oversized', JSON.stringify({ a: `${MARK}${'x'.repeat(20_000)}` })],
  ['whitespace only', '  \n '],
];

const CONTENT_TYPES = [
  'application/json; charset=utf-8',
  'APPLICATION/JSON',
  'application/json; charset=utf-16le',
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/xml',
  'application/jsonp',
  'application/json, text/plain',
  'invalid content type',
];

/** Percent-encodes any string, lone surrogates included (encodeURIComponent throws on those). */
function encode(value: string): string {
  let out = '';
  for (const ch of value) {
    const code = ch.codePointAt(0)!;
    if (code >= 0xd800 && code <= 0xdfff) {
      out += [0xe0 | (code >> 12), 0x80 | ((code >> 6) & 0x3f), 0x80 | (code & 0x3f)].map((b) => `%${b.toString(16).toUpperCase()}`).join('');
    } else {
      out += encodeURIComponent(ch);
    }
  }
  return out;
}

/** Path parameter values, already in URL form: the raw bytes are part of the fuzz. */
const HOSTILE_PATH_PARAMS: [string, string][] = [
  ['huge', `${MARK}${'a'.repeat(5000)}`],
  ['just too long', `${MARK}${'a'.repeat(80)}`],
  ['bad percent', `%ZZ${MARK}`],
  ['lone percent', `${MARK}%`],
  ['nul', `%00${MARK}`],
  ['overlong utf-8', `%C0%AF${MARK}`],
  ['invalid utf-8', `%FF%FE${MARK}`],
  ['encoded lone surrogate', `%ED%A0%80${MARK}`],
  ['encoded slash', `..%2F..%2F${MARK}`],
  ['dot dot', '%2e%2e'],
  ['rtl', `%E2%80%AE${MARK}`],
  ['fullwidth', `%EF%BC%A1${MARK}`],
  ['emoji', `%F0%9F%92%A9${MARK}`],
  ['uppercase uuid', '6F9619FF-8B86-D011-B42D-00C04FC964FF'],
  ['quote', `'${MARK}`],
  ['semicolon', `;${MARK}`],
];

/** Query strings, already in URL form. `${name}` stands for each declared parameter. */
const HOSTILE_QUERY_VALUES: [string, string][] = [
  ...HOSTILE_STRINGS.map(([label, value]): [string, string] => [label, encode(value)]),
  ['bad percent', `%ZZ${MARK}`],
  ['lone percent', '%'],
  ['overlong utf-8', '%C0%AF'],
  ['invalid utf-8', '%FF%FE'],
  ['negative', '-1'],
  ['exponent', '1e3'],
  ['20 digits', '99999999999999999999'],
  ['18 digits', '999999999999999999'],
  ['zero', '0'],
];

// ---------------------------------------------------------------- generation

class Generator {
  constructor(private readonly doc: Document) {}

  resolve(schema: Schema): Schema {
    let current = schema;
    for (let i = 0; current.$ref !== undefined && i < 10; i++) {
      const name = current.$ref.replace('#/components/schemas/', '');
      const target = this.doc.components.schemas[name];
      assert.ok(target, `unresolved $ref ${current.$ref}`);
      current = target;
    }
    return current;
  }

  types(schema: Schema): string[] {
    const s = this.resolve(schema);
    if (s.anyOf ?? s.oneOf) return (s.anyOf ?? s.oneOf)!.flatMap((x) => this.types(x));
    return s.type === undefined ? [] : Array.isArray(s.type) ? s.type : [s.type];
  }

  /** A value the schema accepts. */
  valid(schema: Schema, depth = 0): unknown {
    const s = this.resolve(schema);
    if (s.enum) return pick(s.enum);
    if (s.anyOf ?? s.oneOf) return this.valid(pick((s.anyOf ?? s.oneOf)!), depth);
    const types = this.types(s);
    const type = types.includes('object') ? 'object' : (types.find((x) => x !== 'null') ?? 'string');
    switch (type) {
      case 'object': {
        const out: Record<string, unknown> = {};
        for (const [name, prop] of Object.entries(s.properties ?? {})) {
          if (s.required?.includes(name) || chance(0.5)) out[name] = this.valid(prop, depth + 1);
        }
        return out;
      }
      case 'array':
        return depth > 3 ? [] : Array.from({ length: int(0, 2) }, () => this.valid(s.items ?? {}, depth + 1));
      case 'boolean':
        return chance(0.5);
      case 'integer':
        return int(0, 1000);
      case 'number':
        return random() * 1000;
      default:
        return this.string(s);
    }
  }

  string(s: Schema): string {
    if (s.format === 'uuid') return uuid();
    const min = s.minLength ?? 0;
    const max = Math.min(s.maxLength ?? min + 24, min + 24);
    if (s.pattern) {
      const re = new RegExp(s.pattern, 'u');
      // Shapes random letters rarely hit (an email, a date) come from the schema's own examples.
      const examples = (s.examples ?? []).filter((e): e is string => typeof e === 'string' && re.test(e));
      if (examples.length && chance(0.5)) return pick(examples);
      for (let i = 0; i < 200; i++) {
        const candidate = stringOf(pick(['0123456789', 'abcdefghijklmnopqrstuvwxyz0123456789', 'aé9_.-@+ß日本']), int(Math.max(min, 1), Math.max(max, 1)));
        if (re.test(candidate)) return candidate;
      }
      if (examples.length) return pick(examples);
      assert.fail(`no string found for pattern ${s.pattern}`);
    }
    return stringOf('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ', int(min, max));
  }
}

function uuid(): string {
  const hex = stringOf('0123456789abcdef', 32);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20)}`;
}

/** A fuzz case: everything but the credentials is decided when the case is made. */
interface Case {
  label: string;
  auth: AuthVariant;
  path: PathVariant;
  query: string;
  headers: Record<string, string>;
  body: BodyVariant;
  accept?: string;
}

type Lazy<T> = (creds: Credentials) => Promise<T>;
interface AuthVariant {
  label: string;
  headers: Lazy<Record<string, string>>;
}
interface PathVariant {
  label: string;
  value: Lazy<Record<string, string>>;
}
interface BodyVariant {
  label: string;
  make: Lazy<{ body?: string | Buffer; contentType?: string; form?: boolean }>;
}

const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');

function authVariants(op: Operation): { valid: AuthVariant[]; all: AuthVariant[] } {
  const schemes = new Set((op.security ?? []).flatMap((requirement) => Object.keys(requirement)));
  const none: AuthVariant = { label: 'no credentials', headers: async () => ({}) };
  const bearer = (label: string, token: Lazy<string>): AuthVariant => ({ label, headers: async (c) => ({ authorization: `Bearer ${await token(c)}` }) });
  const cookie = (label: string, token: Lazy<string>): AuthVariant => ({ label, headers: async (c) => ({ cookie: `tessera_refresh=${await token(c)}` }) });
  const valid: AuthVariant[] = [];
  const all: AuthVariant[] = [none];
  const garbage = [
    bearer('garbage bearer', async () => `${MARK}.${MARK}.${MARK}`),
    { label: 'Basic scheme', headers: async () => ({ authorization: `Basic ${Buffer.from(`${MARK}:x`).toString('base64')}` }) },
    { label: 'Bearer without token', headers: async () => ({ authorization: 'Bearer' }) },
    { label: 'three-part header', headers: async () => ({ authorization: `Bearer a ${MARK}` }) },
    bearer('huge bearer', async () => `${MARK}${'A'.repeat(8000)}`),
    bearer('latin-1 bearer', async () => `\u00e9\u00ff${MARK}`),
    bearer('alg none', async (c) => `${b64({ alg: 'none', typ: 'at+jwt' })}.${(await c.pair()).access_token.split('.')[1]}.`),
    bearer('tampered signature', async (c) => `${(await c.pair()).access_token.slice(0, -6)}${MARK.slice(0, 6)}`),
  ];
  if (schemes.has('bearer')) {
    // Which token a route wants is the route's business: offer both.
    valid.push(
      bearer('access token', async (c) => (await c.pair()).access_token),
      bearer('refresh token as bearer', async (c) => (await c.pair()).refresh_token),
    );
    all.push(...garbage);
  }
  if (schemes.has('refreshCookie')) {
    valid.push(cookie('refresh cookie', async (c) => (await c.pair()).refresh_token));
    all.push(
      cookie('access token in cookie', async (c) => (await c.pair()).access_token),
      cookie('garbage cookie', async () => MARK),
      { label: 'malformed cookie header', headers: async () => ({ cookie: `=;;tessera_refresh;${MARK}=%ZZ` }) },
    );
  }
  if (valid.length === 0) {
    // Public: credentials nobody asked for must change nothing.
    valid.push(none);
    all.push(garbage[0]!, cookie('stray cookie', async () => MARK));
  }
  all.push(...valid);
  return { valid, all };
}

/** Hints for property names the generator cannot guess: sometimes the real thing, sometimes not. */
async function hinted(name: string, creds: Credentials): Promise<unknown> {
  switch (name) {
    case 'username':
      return chance(0.5) ? uniqueName('fz') : creds.username;
    case 'password':
    case 'current_password':
    case 'new_password':
      // The same password again: a successful change leaves the user usable.
      return creds.password;
    case 'refresh_token':
      return (await creds.pair()).refresh_token;
    case 'grant_type':
      return 'refresh_token';
    case 'client_id':
      return 'tessera';
    default:
      return undefined;
  }
}

async function validObject(gen: Generator, schema: Schema, creds: Credentials): Promise<unknown> {
  const value = gen.valid(schema);
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
  const out = value as Record<string, unknown>;
  const props = gen.resolve(schema).properties ?? {};
  for (const name of Object.keys(props)) {
    if (!(name in out) || !chance(0.8)) continue;
    const hint = await hinted(name, creds);
    if (hint !== undefined) out[name] = hint;
  }
  return out;
}

function formEncode(value: Record<string, unknown>): string {
  return Object.entries(value)
    .map(([k, v]) => `${encode(k)}=${encode(typeof v === 'string' ? v : JSON.stringify(v))}`)
    .join('&');
}

function bodyVariants(gen: Generator, op: Operation): { valid: BodyVariant[]; all: BodyVariant[] } {
  const content = op.requestBody?.content ?? {};
  const json = content['application/json']?.schema;
  const form = content['application/x-www-form-urlencoded']?.schema;
  const valid: BodyVariant[] = [];
  const all: BodyVariant[] = [];
  const raw = (label: string, body: string | Buffer, contentType = 'application/json', isForm = false): BodyVariant => ({
    label,
    make: async () => ({ body, contentType, form: isForm }),
  });

  if (!op.requestBody || op.requestBody.required === false) valid.push({ label: 'no body', make: async () => ({}) });
  if (json) {
    const schema = gen.resolve(json);
    const validJson = async (c: Credentials) => (await validObject(gen, schema, c)) as Record<string, unknown>;
    valid.push({ label: 'valid json', make: async (c) => ({ body: JSON.stringify(await validJson(c)), contentType: 'application/json' }) });
    const props = Object.entries(schema.properties ?? {});
    for (const name of schema.required ?? []) {
      all.push({
        label: `json without ${name}`,
        make: async (c) => {
          const value = await validJson(c);
          delete value[name];
          return { body: JSON.stringify(value), contentType: 'application/json' };
        },
      });
    }
    all.push({
      label: 'json with an extra property',
      make: async (c) => ({ body: JSON.stringify({ ...(await validJson(c)), [MARK]: MARK }), contentType: 'application/json' }),
    });
    for (const [name, prop] of props) {
      const p = gen.resolve(prop);
      const values: [string, unknown][] = [...HOSTILE_VALUES];
      if (p.maxLength !== undefined) values.push(['at maxLength', gen.string({ ...p, minLength: p.maxLength, pattern: undefined })], ['over maxLength', `${MARK}${'m'.repeat(p.maxLength)}`]);
      if (p.minLength !== undefined && p.minLength > 0) values.push(['under minLength', 'x'.repeat(p.minLength - 1)]);
      for (const [label, value] of values) {
        all.push({
          label: `json ${name}: ${label}`,
          make: async (c) => ({ body: JSON.stringify({ ...(await validJson(c)), [name]: value }), contentType: 'application/json' }),
        });
      }
    }
    for (const type of CONTENT_TYPES) {
      all.push({ label: `valid json as ${type}`, make: async (c) => ({ body: JSON.stringify(await validJson(c)), contentType: type, form: type.startsWith('application/x-www-form-urlencoded') && form !== undefined }) });
    }
    all.push({ label: 'valid json without content type', make: async (c) => ({ body: JSON.stringify(await validJson(c)) }) });
  } else {
    // No body declared: one sent anyway must be refused or ignored, never trusted.
    all.push(raw('unexpected json object', JSON.stringify({ [MARK]: MARK })), raw('unexpected form', `${MARK}=1`, 'application/x-www-form-urlencoded'));
  }
  if (form) {
    const schema = gen.resolve(form);
    const validForm = async (c: Credentials) => (await validObject(gen, schema, c)) as Record<string, unknown>;
    const formBody = (label: string, f: (v: Record<string, unknown>) => string): BodyVariant => ({
      label,
      make: async (c) => ({ body: f(await validForm(c)), contentType: 'application/x-www-form-urlencoded', form: true }),
    });
    valid.push(formBody('valid form', formEncode));
    all.push(
      formBody('form, repeated fields', (v) => `${formEncode(v)}&${formEncode(v)}`),
      formBody('form, bracket field', (v) => `${formEncode(v)}&refresh_token[]=${MARK}`),
      formBody('form, bad percent-encoding', (v) => `${formEncode(v)}&scope=%ZZ${MARK}`),
      formBody('form, extra field', (v) => `${formEncode(v)}&${MARK}=1`),
      formBody('form, empty', () => ''),
      formBody('form, only separators', () => '&&&==&'),
      formBody('form, huge', (v) => `${formEncode(v)}&scope=${MARK}${'s'.repeat(20_000)}`),
      formBody('form as json text', (v) => JSON.stringify(v)),
    );
    for (const [name] of Object.entries(schema.properties ?? {})) {
      for (const [label, value] of HOSTILE_STRINGS) all.push(formBody(`form ${name}: ${label}`, (v) => formEncode({ ...v, [name]: value })));
      all.push(formBody(`form without ${name}`, (v) => formEncode(Object.fromEntries(Object.entries(v).filter(([k]) => k !== name)))));
    }
  }
  for (const [label, body] of RAW_BODIES) all.push(raw(`raw ${label}`, body));
  all.push(raw('empty json body', ''));
  all.push(...valid);
  return { valid, all };
}

function pathVariants(gen: Generator, op: Operation): { valid: PathVariant[]; all: PathVariant[] } {
  const params = (op.parameters ?? []).filter((p) => p.in === 'path');
  if (params.length === 0) {
    const plain: PathVariant = { label: 'path', value: async () => ({}) };
    return { valid: [plain], all: [plain] };
  }
  const valid: PathVariant[] = [
    {
      label: 'a live session of the caller',
      value: async (c) => Object.fromEntries(await Promise.all(params.map(async (p) => [p.name, p.name === 'id' ? await c.victim() : encode(String(gen.valid(p.schema)))]))),
    },
    { label: 'generated from the schema', value: async () => Object.fromEntries(params.map((p) => [p.name, encode(String(gen.valid(p.schema)))])) },
    { label: 'a random uuid', value: async () => Object.fromEntries(params.map((p) => [p.name, uuid()])) },
  ];
  const all = [...valid, ...HOSTILE_PATH_PARAMS.map(([label, raw]): PathVariant => ({ label: `path ${label}`, value: async () => Object.fromEntries(params.map((p) => [p.name, raw])) }))];
  return { valid, all };
}

/** A value for a query or header parameter that the generator cannot guess (a real cursor). */
type ParamHints = Record<string, string>;

function paramValue(gen: Generator, p: Parameter, hints: ParamHints): string {
  // A hint is for the parameter it fits: the feed's `since` is a cursor, the admin audit's a time.
  const hint = hints[p.name.toLowerCase()];
  const pattern = (p.schema as Schema).pattern;
  if (hint !== undefined && (!pattern || new RegExp(pattern, 'u').test(hint))) return hint;
  // The OpenAPI document moves a parameter's example out of its schema.
  const example = (p as { example?: unknown }).example;
  return String(gen.valid(typeof example === 'string' ? { ...(p.schema as Schema), examples: [example] } : p.schema));
}

function queryVariants(gen: Generator, op: Operation, hints: ParamHints): { valid: string[]; all: string[] } {
  const params = (op.parameters ?? []).filter((p) => p.in === 'query');
  const valid = [''];
  for (let i = 0; i < 3 && params.length > 0; i++) {
    valid.push(
      params
        .filter(() => chance(0.7))
        .map((p) => `${p.name}=${encode(paramValue(gen, p, hints))}`)
        .join('&'),
    );
  }
  const all = [...valid, `${MARK}=1`, '%ZZ', `&&&=${MARK}&`, `x=${MARK}${'q'.repeat(6000)}`];
  for (const p of params) {
    for (const [, value] of HOSTILE_QUERY_VALUES) all.push(`${p.name}=${value}`);
    all.push(`${p.name}=1&${p.name}=2`, p.name, `${p.name}[]=1`, `${p.name}[a]=1`);
  }
  return { valid, all };
}

/** Header parameters: only what HTTP can carry (Latin-1, no controls); the rest of the hostile set is for bodies. */
function headerVariants(gen: Generator, op: Operation, hints: ParamHints): { valid: Record<string, string>[]; all: Record<string, string>[] } {
  const params = (op.parameters ?? []).filter((p) => p.in === 'header');
  const valid: Record<string, string>[] = [{}];
  if (params.length > 0) valid.push(Object.fromEntries(params.map((p) => [p.name, paramValue(gen, p, hints)])));
  // Headers any request may carry: an expectation nobody meets, headers past Node's limit, method overrides.
  const all = [...valid, { expect: 'x-teapot' }, { 'x-filler': `${MARK}${'f'.repeat(20_000)}` }, { 'x-http-method-override': 'DELETE' }, { 'content-encoding': 'gzip' }];
  for (const p of params) {
    for (const [, value] of HOSTILE_STRINGS) if (/^[\t\x20-\x7e\x80-\xff]*$/.test(value)) all.push({ [p.name]: value });
    all.push({ [p.name]: `\u00e9\u00ff${MARK}` });
  }
  return { valid, all };
}

// ---------------------------------------------------------------- checks

const OAUTH_CODES = new Set(['invalid_request', 'invalid_client', 'invalid_grant', 'unauthorized_client', 'unsupported_grant_type', 'invalid_scope', 'server_error', 'temporarily_unavailable']);
const CODES: ReadonlySet<string> = new Set(errorCodes);

/** What is wrong with an answer, or nothing. */
function judge(op: Operation, req: Request, answer: Answer): string | undefined {
  if (answer.status >= 500) return `${answer.status} (a 5xx)`;
  const declared = op.responses[String(answer.status)] ?? op.responses.default;
  if (!declared) return `${answer.status} is not a declared response`;
  if (answer.status < 400) return undefined;
  if (answer.text.includes(MARK)) return `${answer.status} echoes the input`;
  if (!String(answer.headers['content-type']).startsWith('application/json')) return `${answer.status} is ${answer.headers['content-type']}, not JSON`;
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(answer.text) as Record<string, unknown>;
  } catch {
    return `${answer.status} body is not JSON`;
  }
  const keys = Object.keys(body).sort().join(',');
  // What the schema accepts, the server must not refuse as malformed: its own rules belong in the schema.
  const malformed = answer.status === 400 && (body.error === 'invalid_request' || body.error === 'weak_password');
  if (req.valid && malformed) return `400 ${String(body.error)} for a request the schema accepts: ${String(body.message ?? body.error_description)}`;
  if (req.form) {
    if (!OAUTH_CODES.has(String(body.error)) || typeof body.error_description !== 'string' || keys !== 'error,error_description') {
      return `${answer.status} form grant error is not OAuth's shape: ${keys} ${String(body.error)}`;
    }
    return undefined;
  }
  if (keys !== 'error,message' || typeof body.message !== 'string' || !CODES.has(String(body.error))) {
    return `${answer.status} error is not {error, message} with a contract code: ${keys} ${String(body.error).slice(0, 40)}`;
  }
  const listed = (declared.description ?? '').split(/[^a-z_]+/);
  if (!listed.includes(String(body.error))) return `${answer.status} ${String(body.error)} is not among the codes declared for ${answer.status} (${declared.description})`;
  if (answer.status === 401 && answer.headers['www-authenticate'] === undefined) return '401 without WWW-Authenticate';
  return undefined;
}

// ---------------------------------------------------------------- the test

describe('every operation of /openapi.json, fuzzed from its own schema', () => {
  let t: TestServer;
  let doc: Document;
  let base: URL;

  let smtp: TestSmtpServer;

  before(async () => {
    // With mail set up, so the mail routes answer (without, they are 503 not_configured by design).
    smtp = await startSmtpServer();
    t = await startTestServer({ smtpUrl: smtp.url });
    base = new URL(t.url);
    const res = await t.call('GET', '/openapi.json');
    assert.equal(res.status, 200);
    doc = res.body as Document;
  });
  after(async () => {
    agent.destroy();
    await t.close();
    await smtp.close();
  });

  test(`never a 5xx, only declared statuses, every error in the contract's shape, nothing echoed (seed ${SEED})`, async () => {
    const gen = new Generator(doc);
    const cursor = String((await t.call('GET', '/auth/revocations')).body.cursor);
    const hints: ParamHints = { since: cursor, 'last-event-id': cursor };
    const failures = new Map<string, string>();
    const statuses = new Map<string, Set<number>>();
    let requests = 0;
    const started = performance.now();

    for (const [template, item] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(item)) {
        const creds = await Credentials.create(t);
        const auth = authVariants(op);
        const bodies = bodyVariants(gen, op);
        const paths = pathVariants(gen, op);
        const queries = queryVariants(gen, op, hints);
        const extraHeaders = headerVariants(gen, op, hints);
        const accepts = method === 'get' ? ['text/event-stream', 'application/xml', '*/*'] : [];

        const cases: Case[] = [];
        const validCase = (label: string, over: Partial<Case>): Case => ({
          label,
          auth: pick(auth.valid),
          path: pick(paths.valid),
          query: pick(queries.valid),
          headers: pick(extraHeaders.valid),
          body: pick(bodies.valid),
          ...over,
        });
        for (const body of bodies.all) cases.push(validCase(`body ${body.label}`, { body }));
        for (const a of auth.all) cases.push(validCase(`auth ${a.label}`, { auth: a }));
        for (const path of paths.all) cases.push(validCase(`path ${path.label}`, { path }));
        for (const query of queries.all) cases.push(validCase(`query ${query.slice(0, 40)}`, { query }));
        for (const h of extraHeaders.all) cases.push(validCase(`header ${JSON.stringify(h).slice(0, 40)}`, { headers: h }));
        for (const accept of accepts) cases.push(validCase(`accept ${accept}`, { accept }));
        for (let i = 0; i < RANDOM_CASES; i++) {
          const c: Case = {
            label: '',
            auth: pick(auth.all),
            path: pick(paths.all),
            query: pick(queries.all),
            headers: pick(extraHeaders.all),
            body: pick(bodies.all),
            ...(accepts.length && chance(0.2) ? { accept: pick(accepts) } : {}),
          };
          c.label = `random: ${c.auth.label} / ${c.path.label} / ${c.body.label} / ${c.query.slice(0, 30)} / ${JSON.stringify(c.headers).slice(0, 30)}`;
          cases.push(c);
        }

        for (const c of cases) {
          const params = await c.path.value(creds);
          const body = await c.body.make(creds);
          const headers = { ...c.headers, ...(await c.auth.headers(creds)) };
          if (body.contentType !== undefined) headers['content-type'] = body.contentType;
          if (c.accept !== undefined) headers.accept = c.accept;
          const path = template.replace(/\{(\w+)\}/g, (_, name: string) => params[name] ?? '') + (c.query ? `?${c.query}` : '');
          // Node's parser refuses headers past its limit before any route is known: the contract's shape, even for the form grant.
          const beforeRouting = 'x-filler' in c.headers;
          const valid = bodies.valid.includes(c.body) && paths.valid.includes(c.path) && queries.valid.includes(c.query) && extraHeaders.valid.includes(c.headers);
          const req: Request = { label: `${method.toUpperCase()} ${template} ${c.label}`, method: method.toUpperCase(), path, headers, body: body.body, form: body.form === true && !beforeRouting, valid };
          const answer = await send(base, req);
          requests += 1;
          if (method !== 'get') creds.spend();
          const key = `${op.operationId}`;
          if (!statuses.has(key)) statuses.set(key, new Set());
          statuses.get(key)!.add(answer.status);
          if (process.env.FUZZ_DEBUG) console.log(`${answer.status} ${req.label.slice(0, 120)} :: ${answer.text.slice(0, 140)}`);
          const problem = judge(op, req, answer);
          if (problem !== undefined) {
            const signature = `${op.operationId}: ${problem}`;
            if (!failures.has(signature)) failures.set(signature, `${req.label.slice(0, 160)} -> ${answer.text.slice(0, 200)}`);
          }
        }
      }
    }

    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    const seen = [...statuses].map(([id, set]) => `${id} ${[...set].sort().join('/')}`).join('; ');
    console.log(`openapi fuzz: ${requests} requests in ${seconds} s, seed ${SEED}. Statuses: ${seen}`);
    assert.deepEqual(
      [...failures].map(([signature, example]) => `${signature}\n      e.g. ${example}`),
      [],
      `seed ${SEED} (replay with FUZZ_SEED=${SEED})`,
    );
    // Still serving after all that.
    assert.equal((await t.call('GET', '/healthz')).status, 200);
  });

  test('the published username rule is the server\'s: after NFKC, the schema refuses no name register takes, and takes none it refuses but for mixed scripts', () => {
    const schema = new Generator(doc).resolve({ $ref: '#/components/schemas/Username' });
    assert.ok(schema.pattern, 'the username schema has a pattern');
    const pattern = new RegExp(schema.pattern, 'u');
    const length = (s: string) => [...s].length;
    const schemaAccepts = (raw: string) => {
      const s = raw.normalize('NFKC');
      return pattern.test(s) && length(s) >= (schema.minLength ?? 0) && length(s) <= (schema.maxLength ?? Infinity);
    };
    /** `undefined` when the server takes the name, else why not. */
    const serverRefusal = (raw: string): string | undefined => {
      try {
        normalizeUsername(raw);
        return undefined;
      } catch (error) {
        return (error as Error).message;
      }
    };
    const disagreements: string[] = [];
    const check = (raw: string) => {
      const refusal = serverRefusal(raw);
      const accepted = schemaAccepts(raw);
      if (refusal === undefined && !accepted) disagreements.push(`the schema refuses ${JSON.stringify(raw)}, the server takes it`);
      // Which scripts may mix is beyond a pattern: that refusal is the server's own 400 invalid_request.
      else if (refusal !== undefined && accepted && !/script/i.test(refusal)) disagreements.push(`the schema takes ${JSON.stringify(raw)}, the server refuses it: ${refusal}`);
    };
    // Unassigned, private-use and surrogate code points: NFKC leaves them be, and none is a letter or a digit.
    const inert = /[\p{Cn}\p{Co}\p{Cs}]/u;
    for (let cp = 0; cp <= 0x10ffff; cp++) {
      const char = String.fromCodePoint(cp);
      if (inert.test(char)) continue;
      check(`ab${char}`);
      check(char.repeat(3));
    }
    for (const raw of ['ab', 'abc', 'x'.repeat(64), 'x'.repeat(65), 'ＡＢ', '\uFDFA', 'e\u0301x', '\uFDFA'.repeat(4), '\u037Aab', 'ab\uD800', '', 'a\u0000b']) check(raw);
    assert.deepEqual(disagreements.slice(0, 20), []);
  });
});
