const UNITS: Record<string, number> = { s: 1, m: 60, h: 3_600, d: 86_400 };

/**
 * Parses `30s`, `15m`, `1h`, `7d` (or a bare number of seconds) into seconds.
 * Returns `undefined` for anything else, so the caller can name the bad option.
 */
export function parseDuration(text: string): number | undefined {
  const match = /^(\d{1,9})([smhd]?)$/.exec(text.trim());
  if (!match) return undefined;
  return Number(match[1]) * (UNITS[match[2] || 's'] ?? 1);
}
