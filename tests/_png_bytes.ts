/**
 * Hand-made PNG bytes for tests that need what an encoder will not write (bombs, odd chunks):
 * CRC-32, a chunk with its length and CRC, and the concatenation of byte arrays.
 *
 * @module
 */

/** CRC-32 as PNG uses it (ISO 3309, PNG spec Annex D), bit by bit: slow, short and plain. */
export function crc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const b of bytes) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

/** The chunk with its CRC (the last 4 bytes) recomputed over its type and data, in place. */
export function withCrc(chunk: Uint8Array): Uint8Array {
  new DataView(chunk.buffer, chunk.byteOffset).setUint32(
    chunk.length - 4,
    crc32(chunk.subarray(4, chunk.length - 4)),
  );
  return chunk;
}

/** A chunk: its length, 4-letter type, data and CRC. */
export function pngChunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  new DataView(out.buffer).setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  return withCrc(out);
}

/** The byte arrays one after another. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, p) => sum + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
