import { generateKeyPairSync, type KeyObject, randomBytes, sign } from 'node:crypto';
import { isIP } from 'node:net';

/** A test CA and a server certificate it signed, all PEM. */
export interface TestCertificate {
  /** The CA certificate a client trusts (`tls.ca`). */
  ca: string;
  /** The server's certificate, valid for `localhost` and `127.0.0.1` unless other names were asked for. */
  cert: string;
  /** The server's private key (PKCS#8). */
  key: string;
}

/**
 * A fresh CA and a server certificate for loopback TLS in tests, built with node:crypto
 * alone (no openssl binary, no dependency). A separate CA rather than one self-signed
 * leaf: OpenSSL only takes a certificate as a trust anchor when it may sign, and a server
 * certificate should not. Valid from an hour ago (clock skew) for a day.
 *
 * @example
 * const { ca, cert, key } = createTestCertificate();
 * const server = tls.createServer({ cert, key });
 * tls.connect({ host: '127.0.0.1', port, ca });
 */
export function createTestCertificate(names: readonly string[] = ['localhost', '127.0.0.1']): TestCertificate {
  const now = Date.now();
  const notBefore = new Date(now - 3_600_000);
  const notAfter = new Date(now + 86_400_000);
  const caKeys = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const serverKeys = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const caName = name('Tessera test CA');
  const ca = certificate({
    issuer: caName,
    subject: caName,
    publicKey: caKeys.publicKey,
    signer: caKeys.privateKey,
    notBefore,
    notAfter,
    extensions: [
      extension(OID.basicConstraints, true, seq(bool(true))),
      extension(OID.keyUsage, true, bitString(Buffer.from([0x06]), 1)), // keyCertSign, cRLSign
    ],
  });
  const cert = certificate({
    issuer: caName,
    subject: name(names[0] ?? 'localhost'),
    publicKey: serverKeys.publicKey,
    signer: caKeys.privateKey,
    notBefore,
    notAfter,
    extensions: [
      extension(OID.basicConstraints, true, seq()),
      extension(OID.keyUsage, true, bitString(Buffer.from([0x80]), 7)), // digitalSignature
      extension(OID.extKeyUsage, false, seq(oid(OID.serverAuth))),
      extension(OID.subjectAltName, false, seq(...names.map(altName))),
    ],
  });
  return { ca: pem(ca), cert: pem(cert), key: serverKeys.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString() };
}

const OID = {
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  commonName: '2.5.4.3',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  serverAuth: '1.3.6.1.5.5.7.3.1',
};

function certificate(spec: {
  issuer: Buffer;
  subject: Buffer;
  publicKey: KeyObject;
  signer: KeyObject;
  notBefore: Date;
  notAfter: Date;
  extensions: Buffer[];
}): Buffer {
  const algorithm = seq(oid(OID.ecdsaWithSha256));
  const tbs = seq(
    tlv(0xa0, integer(Buffer.from([2]))), // v3
    integer(serialNumber()),
    algorithm,
    spec.issuer,
    seq(time(spec.notBefore), time(spec.notAfter)),
    spec.subject,
    spec.publicKey.export({ format: 'der', type: 'spki' }),
    tlv(0xa3, seq(...spec.extensions)),
  );
  // node:crypto signs ECDSA in the DER (r, s) form X.509 expects.
  return seq(tbs, algorithm, bitString(sign('sha256', tbs, spec.signer)));
}

function serialNumber(): Buffer {
  const serial = randomBytes(16);
  // Positive and without a leading zero byte: DER integers are minimal.
  serial[0] = (serial[0]! & 0x7f) | 0x40;
  return serial;
}

function name(commonName: string): Buffer {
  return seq(tlv(0x31, seq(oid(OID.commonName), tlv(0x0c, Buffer.from(commonName, 'utf8')))));
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return seq(oid(id), ...(critical ? [bool(true)] : []), tlv(0x04, value));
}

function altName(value: string): Buffer {
  if (isIP(value) === 6) throw new TypeError(`names: IPv6 addresses are not supported, got ${value}`);
  // [7] iPAddress holds the address bytes; [2] dNSName the name.
  return isIP(value) === 4 ? tlv(0x87, Buffer.from(value.split('.').map(Number))) : tlv(0x82, Buffer.from(value, 'ascii'));
}

function time(date: Date): Buffer {
  const iso = date.toISOString().replace(/[-:T]/g, '').slice(0, 14);
  // UTCTime up to 2049, GeneralizedTime after (RFC 5280 §4.1.2.5).
  return date.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(`${iso.slice(2)}Z`)) : tlv(0x18, Buffer.from(`${iso}Z`));
}

function oid(dotted: string): Buffer {
  const [first = 0, second = 0, ...rest] = dotted.split('.').map(Number);
  const bytes = [first * 40 + second];
  for (const arc of rest) {
    const chunk = [arc & 0x7f];
    for (let v = arc >>> 7; v > 0; v >>>= 7) chunk.unshift((v & 0x7f) | 0x80);
    bytes.push(...chunk);
  }
  return tlv(0x06, Buffer.from(bytes));
}

function integer(value: Buffer): Buffer {
  // Positive: a set top bit would read as a sign bit.
  return tlv(0x02, (value[0] ?? 0) & 0x80 ? Buffer.concat([Buffer.from([0]), value]) : value);
}

function bool(value: boolean): Buffer {
  return tlv(0x01, Buffer.from([value ? 0xff : 0]));
}

function bitString(value: Buffer, unusedBits = 0): Buffer {
  return tlv(0x03, Buffer.concat([Buffer.from([unusedBits]), value]));
}

function seq(...items: Buffer[]): Buffer {
  return tlv(0x30, Buffer.concat(items));
}

function tlv(tag: number, content: Buffer): Buffer {
  const n = content.length;
  const length = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : n < 0x10000 ? [0x82, n >> 8, n & 0xff] : [0x83, n >> 16, (n >> 8) & 0xff, n & 0xff];
  return Buffer.concat([Buffer.from([tag, ...length]), content]);
}

function pem(der: Buffer): string {
  return `-----BEGIN CERTIFICATE-----\n${der.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE-----\n`;
}
