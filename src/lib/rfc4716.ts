/**
 * Public keys in the two formats a Storage Box reads: RFC4716 ("SSH2") blocks on port 22 and
 * OpenSSH one-line keys on port 23.
 */
export interface PublicKey {
  type: string;
  /** The key blob, base64 as in an OpenSSH `.pub` line. */
  blob: string;
  comment: string;
}

export function parseOpenSshPublicKey(text: string): PublicKey {
  const line = text.trim().split('\n')[0] ?? '';
  const [type, blob, ...rest] = line.split(/\s+/);
  if (!type || !blob || !/^[A-Za-z0-9+/]+={0,2}$/.test(blob)) {
    throw new Error('not an OpenSSH public key line');
  }
  // The blob starts with the key type as an SSH string; a mismatch means a corrupt key.
  const raw = Buffer.from(blob, 'base64');
  const len = raw.length >= 4 ? raw.readUInt32BE(0) : -1;
  if (len <= 0 || raw.subarray(4, 4 + len).toString('latin1') !== type) {
    throw new Error(`public key blob does not match its type ${type}`);
  }
  return { type, blob, comment: rest.join(' ') };
}

/** The RFC4716 block for a key, as `ssh-keygen -e` prints it but without a Comment header. */
export function toRfc4716(key: PublicKey): string {
  const lines = ['---- BEGIN SSH2 PUBLIC KEY ----'];
  for (let i = 0; i < key.blob.length; i += 70) lines.push(key.blob.slice(i, i + 70));
  lines.push('---- END SSH2 PUBLIC KEY ----');
  return lines.join('\n') + '\n';
}

export function toOpenSshLine(key: PublicKey): string {
  return `${key.type} ${key.blob}${key.comment ? ' ' + key.comment : ''}\n`;
}

/** Key blobs found in an authorized_keys text, by format. */
export function blobsIn(text: string): { rfc4716: Set<string>; openssh: Set<string> } {
  const rfc4716 = new Set<string>();
  const openssh = new Set<string>();
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] ?? '').trim();
    if (line === '---- BEGIN SSH2 PUBLIC KEY ----') {
      let body = '';
      let continued = false;
      for (i++; i < lines.length; i++) {
        const l = (lines[i] ?? '').trim();
        if (l === '---- END SSH2 PUBLIC KEY ----') break;
        // Headers are "Tag: value", and may continue on the next line after a trailing backslash.
        if (continued || /^[\x21-\x39\x3b-\x7e]{1,64}:/.test(l)) {
          continued = l.endsWith('\\');
          continue;
        }
        body += l;
      }
      if (body) rfc4716.add(body);
      continue;
    }
    if (line === '' || line.startsWith('#')) continue;
    // OpenSSH lines may start with options; the blob is the field after a known key type.
    const fields = line.split(/\s+/);
    const at = fields.findIndex((f) => /^(ssh-|ecdsa-|sk-)/.test(f));
    const blob = at >= 0 ? fields[at + 1] : undefined;
    if (blob) openssh.add(blob);
  }
  return { rfc4716, openssh };
}

/**
 * Adds the key to an authorized_keys text in both formats, keeping every line already there and
 * adding nothing that is already present. The result ends with a newline.
 */
export function mergeAuthorizedKeys(existing: string, key: PublicKey): { text: string; added: string[] } {
  const have = blobsIn(existing);
  let text = existing;
  const added: string[] = [];
  const append = (chunk: string): void => {
    if (text.length > 0 && !text.endsWith('\n')) text += '\n';
    text += chunk;
  };
  if (!have.rfc4716.has(key.blob)) {
    append(toRfc4716(key));
    added.push('RFC4716');
  }
  if (!have.openssh.has(key.blob)) {
    append(toOpenSshLine(key));
    added.push('OpenSSH');
  }
  if (text.length > 0 && !text.endsWith('\n')) text += '\n';
  return { text, added };
}

/**
 * The authorized_keys text without `blob` (hbs's key): its OpenSSH lines and RFC4716 blocks go,
 * every other byte stays as it was. Returns how many entries were removed.
 */
export function removeFromAuthorizedKeys(text: string, blob: string): { text: string; removed: number } {
  const lines = text.split(/(?<=\n)/);
  const out: string[] = [];
  let removed = 0;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? '';
    const bare = line.trim();
    if (bare === '---- BEGIN SSH2 PUBLIC KEY ----') {
      let j = i + 1;
      while (j < lines.length && (lines[j] ?? '').trim() !== '---- END SSH2 PUBLIC KEY ----') j++;
      const block = lines.slice(i, Math.min(j + 1, lines.length));
      if (j < lines.length && blobsIn(block.join('')).rfc4716.has(blob)) {
        removed++;
      } else {
        out.push(...block);
      }
      i = j;
      continue;
    }
    if (bare !== '' && !bare.startsWith('#') && blobsIn(bare).openssh.has(blob)) {
      removed++;
      continue;
    }
    out.push(line);
  }
  return { text: out.join(''), removed };
}
