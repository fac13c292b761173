import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEFAULTS } from './config.js';
import { SERVER_FLAGS, type ServerFlag } from './server_flags.js';

const flags = Object.entries(SERVER_FLAGS) as [string, ServerFlag][];

test('each option has one flag and one environment variable, named alike', () => {
  const options = flags.map(([, f]) => f.option);
  assert.equal(new Set(options).size, options.length, 'an option set by two flags');
  const envs = flags.map(([, f]) => f.env);
  assert.equal(new Set(envs).size, envs.length, 'an environment variable read twice');
  for (const [name, flag] of flags) {
    assert.match(name, /^[a-z]+(-[a-z]+)*$/);
    assert.match(flag.env, /^(PORT|HOST|DATABASE_URL|REDIS_URL|TESSERA_[A-Z_]+)$/);
  }
});

test('the default the help shows is the one the server applies', () => {
  for (const [name, flag] of flags) {
    if (!(flag.option in DEFAULTS)) continue;
    const value = DEFAULTS[flag.option as keyof typeof DEFAULTS];
    const shown = typeof value === 'boolean' ? (value ? 'on' : 'off') : String(value);
    assert.equal(flag.default, shown, `--${name}`);
  }
  // Every default the server has is shown by some flag.
  const shownOptions = new Set(flags.map(([, f]) => f.option as string));
  for (const option of Object.keys(DEFAULTS)) assert.ok(shownOptions.has(option), `DEFAULTS.${option} has no flag`);
});

test('a list of allowed values is what the help says', () => {
  for (const [name, flag] of flags) {
    if (!Array.isArray(flag.value)) continue;
    assert.ok(flag.value.includes(flag.default), `--${name}: its default is allowed`);
    for (const v of flag.value) assert.ok(flag.help.includes(v), `--${name}: the help names ${v}`);
  }
});
