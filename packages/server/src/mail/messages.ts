/** A mail's subject and its two bodies (the same words as plain text and as HTML). */
export interface MailContent {
  subject: string;
  text: string;
  html: string;
}

/**
 * The password-reset mail. The subject carries no link: subjects end up in
 * notification previews and mail-server logs, the single-use token must not.
 *
 * @example
 * const mail = passwordResetMail({ username: 'ada', url: 'https://app.example/#reset-password=…', validMinutes: 30 });
 * mailer.send(user.email, mail, { kind: 'password_reset', userId: user.id });
 */
export function passwordResetMail(input: { username: string; url: string; validMinutes: number }): MailContent {
  const validFor = duration(input.validMinutes, 'minute', 'validMinutes');
  return compose({
    subject: 'Reset your Tessera password',
    username: input.username,
    url: checkedUrl(input.url),
    before: 'Someone asked to reset the password of your Tessera account. To choose a new password, open this link:',
    after: [`The link works once and expires in ${validFor}.`, 'If you did not ask for this, you can ignore this mail: your password stays as it is.'],
  });
}

/**
 * The mail that confirms an address belongs to the account.
 *
 * @example
 * const mail = emailVerificationMail({ username: 'ada', url: 'https://app.example/#verify-email=…', validHours: 24 });
 * mailer.send(email, mail, { kind: 'email_verification', userId: user.id });
 */
export function emailVerificationMail(input: { username: string; url: string; validHours: number }): MailContent {
  const validFor = duration(input.validHours, 'hour', 'validHours');
  return compose({
    subject: 'Confirm your email address for Tessera',
    username: input.username,
    url: checkedUrl(input.url),
    before: 'To confirm that this address belongs to your Tessera account, open this link:',
    after: [`The link works once and expires in ${validFor}.`, 'If you did not ask for this, you can ignore this mail: nothing changes.'],
  });
}

/**
 * A notice without a link, sent to the account's verified address after something that
 * could be a takeover (a password reset, the address changed): the owner learns of it
 * even when the change was not theirs.
 *
 * @example
 * const mail = securityNoticeMail({ username: 'ada', what: 'The password of your Tessera account was reset.' });
 * mailer.send(user.email, mail, { kind: 'security_notice', userId: user.id });
 */
export function securityNoticeMail(input: { username: string; what: string }): MailContent {
  const greeting = `Hello ${input.username.replace(/\p{Cc}/gu, '')},`;
  const after = 'If this was you, there is nothing to do. If it was not, reset your password now and tell whoever runs this service.';
  const text = [greeting, input.what, after].join('\n\n');
  const html = [
    '<!doctype html>',
    '<html lang="en">',
    '<head><meta charset="utf-8"><meta name="viewport" content="width=device-width"></head>',
    '<body style="font-family: sans-serif; line-height: 1.5">',
    ...[greeting, input.what, after].map((line) => `<p>${escapeHtml(line)}</p>`),
    '</body>',
    '</html>',
  ].join('\n');
  return { subject: 'Security notice for your Tessera account', text: `${text}\n`, html: `${html}\n` };
}

function compose(parts: { subject: string; username: string; url: string; before: string; after: string[] }): MailContent {
  // Control characters dropped: a username never starts a line of its own in the text body.
  const greeting = `Hello ${parts.username.replace(/\p{Cc}/gu, '')},`;
  // The link on a line of its own: mail clients make it clickable and nothing sticks to it when copied.
  const text = [greeting, parts.before, parts.url, ...parts.after].join('\n\n');
  const url = escapeHtml(parts.url);
  const html = [
    '<!doctype html>',
    '<html lang="en">',
    '<head><meta charset="utf-8"><meta name="viewport" content="width=device-width"></head>',
    '<body style="font-family: sans-serif; line-height: 1.5">',
    `<p>${escapeHtml(greeting)}</p>`,
    `<p>${escapeHtml(parts.before)}</p>`,
    `<p><a href="${url}">${url}</a></p>`,
    ...parts.after.map((line) => `<p>${escapeHtml(line)}</p>`),
    '</body>',
    '</html>',
  ].join('\n');
  return { subject: parts.subject, text: `${text}\n`, html: `${html}\n` };
}

/** Every interpolated value goes through here: a username or URL must never become markup. */
function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** The server builds these links; anything but an absolute http(s) URL is a bug, not input. */
function checkedUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new TypeError('url: expected an absolute http(s) URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new TypeError('url: expected an http(s) URL');
  // The parsed form: the parser drops tabs and line breaks the raw string might carry into the text body.
  return url.href;
}

function duration(value: number, unit: 'minute' | 'hour', name: string): string {
  if (!Number.isSafeInteger(value) || value < 1) throw new TypeError(`${name}: expected a whole number >= 1, got ${value}`);
  return `${value} ${unit}${value === 1 ? '' : 's'}`;
}
