type ImageHeader = { format: 'png' | 'jpeg'; width: number; height: number };

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/**
 * Reads format and dimensions from the first bytes of an image, trusting only the bytes
 * (never a declared MIME type). Returns a readable reason when the bytes are not a PNG or JPEG
 * or their header is damaged.
 */
export function readImageHeader(bytes: Buffer): ImageHeader | { error: string } {
  if (bytes.length >= 8 && bytes.subarray(0, 8).equals(PNG_SIGNATURE)) return readPng(bytes);
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return readJpeg(bytes);
  return { error: 'image must be a PNG or JPEG (checked by its content, not its declared type)' };
}

function readPng(bytes: Buffer): ImageHeader | { error: string } {
  // The PNG spec requires IHDR (13 data bytes) to be the first chunk.
  if (bytes.length < 24 || bytes.readUInt32BE(8) !== 13 || bytes.toString('latin1', 12, 16) !== 'IHDR') {
    return { error: 'corrupt PNG: missing IHDR header' };
  }
  const width = bytes.readUInt32BE(16);
  const height = bytes.readUInt32BE(20);
  if (width === 0 || height === 0) return { error: 'corrupt PNG: zero width or height' };
  return { format: 'png', width, height };
}

// SOF0–SOF15 carry the frame size, except C4 (DHT), C8 (reserved JPG) and CC (DAC).
function isStartOfFrame(marker: number): boolean {
  return marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
}

function readJpeg(bytes: Buffer): ImageHeader | { error: string } {
  let at = 2;
  while (at < bytes.length) {
    if (bytes[at] !== 0xff) return { error: `corrupt JPEG: expected a marker at byte ${at}` };
    while (bytes[at] === 0xff) at++; // fill bytes may precede any marker
    const marker = bytes[at];
    at++;
    if (marker === undefined) break;
    // Standalone markers carry no length field.
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) continue;
    if (marker === 0x00 || marker === 0xd8) return { error: `corrupt JPEG: unexpected marker 0x${marker.toString(16)}` };
    if (marker === 0xd9 || marker === 0xda) return { error: 'corrupt JPEG: image data starts before any frame header' };
    if (at + 2 > bytes.length) break;
    const length = bytes.readUInt16BE(at);
    if (length < 2) return { error: 'corrupt JPEG: invalid segment length' };
    if (isStartOfFrame(marker)) {
      // length(2) precision(1) height(2) width(2) components(1)
      if (length < 8 || at + 7 > bytes.length) return { error: 'corrupt JPEG: truncated frame header' };
      const height = bytes.readUInt16BE(at + 3);
      const width = bytes.readUInt16BE(at + 5);
      // A zero height defers the size to a DNL marker, which Kling's decoder is not known to accept.
      if (width === 0 || height === 0) return { error: 'corrupt JPEG: zero width or height in frame header' };
      return { format: 'jpeg', width, height };
    }
    at += length;
  }
  return { error: 'corrupt JPEG: no frame header found' };
}
