import { crc32 } from 'node:zlib';

function pngChunk(type: string, data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const typeAndData = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(typeAndData));
  return Buffer.concat([length, typeAndData, crc]);
}

/** A structurally valid PNG header (signature, IHDR, IEND) declaring the given size. */
export function png(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.writeUInt8(8, 8); // bit depth
  ihdr.writeUInt8(2, 9); // truecolour
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

function segment(marker: number, data: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt8(0xff, 0);
  head.writeUInt8(marker, 1);
  head.writeUInt16BE(data.length + 2, 2);
  return Buffer.concat([head, data]);
}

/**
 * A JPEG whose segments a decoder would walk: SOI, APP0 (JFIF), a comment, DQT, SOFn, SOS, EOI.
 * `sof` picks the frame type (0xc0 baseline, 0xc1 extended, 0xc2 progressive);
 * `frameAfterScan` puts the frame header after the scan, which makes the header corrupt.
 */
export function jpeg(width: number, height: number, opts: { sof?: number; frameAfterScan?: boolean } = {}): Buffer {
  const jfif = Buffer.from([0x4a, 0x46, 0x49, 0x46, 0x00, 1, 1, 0, 0, 1, 0, 1, 0, 0]);
  const dqt = Buffer.concat([Buffer.from([0]), Buffer.alloc(64, 1)]);
  const frame = Buffer.alloc(15);
  frame.writeUInt8(8, 0);
  frame.writeUInt16BE(height, 1);
  frame.writeUInt16BE(width, 3);
  frame.writeUInt8(3, 5);
  frame.set([1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1], 6);
  const scan = Buffer.concat([segment(0xda, Buffer.from([3, 1, 0, 2, 0x11, 3, 0x11, 0, 63, 0])), Buffer.from([0x12, 0x34])]);
  const sof = segment(opts.sof ?? 0xc0, frame);
  return Buffer.concat([
    Buffer.from([0xff, 0xd8]),
    segment(0xe0, jfif),
    // fill bytes before a marker are legal and must be skipped
    Buffer.from([0xff]),
    segment(0xfe, Buffer.from('made by a test', 'latin1')),
    segment(0xdb, dqt),
    ...(opts.frameAfterScan ? [scan, sof] : [sof, scan]),
    Buffer.from([0xff, 0xd9]),
  ]);
}
