// A GGUF (version 3) file writer — the model file format llama.cpp loads. Only what a model of our
// own needs: typed key/value metadata (scalars, strings, arrays of them) and F32 tensors.
//
// Layout (ggml's docs/gguf.md, all little-endian):
//   magic "GGUF" | u32 version = 3 | u64 tensor count | u64 metadata count
//   metadata:    string key | u32 value type | value   (string = u64 byte length + UTF-8 bytes;
//                                                       array = u32 element type + u64 count + elements)
//   tensor info: string name | u32 dimension count | u64 ne[0..n) (ne[0] varies fastest) |
//                u32 ggml type | u64 offset of its data, relative to the data section, aligned
//   padding to `general.alignment` (32 unless the metadata says otherwise), then the tensors' data,
//   each padded to the alignment.
// Tensor data is produced by a callback per tensor and streamed to the file, so a model of a few
// hundred MB never sits in memory whole.

import fs from 'node:fs';

export const GGUF_MAGIC = 'GGUF';
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** gguf_metadata_value_type */
export const GgufType = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;

/** ggml_type of a tensor: only F32 is written here (no quantisation: the model is random anyway). */
export const GGML_TYPE_F32 = 0;

export type GgufScalarType = 'u32' | 'i32' | 'f32' | 'bool' | 'string' | 'u64';
export type GgufValue =
  | { type: 'u32' | 'i32' | 'f32' | 'u64'; value: number }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'array'; of: 'string'; value: readonly string[] }
  | { type: 'array'; of: 'f32' | 'i32'; value: readonly number[] };

export interface GgufTensor {
  name: string;
  /** ne[0] first: the length of a row, then the number of rows, ... (ggml's order, not numpy's). */
  dims: readonly number[];
  /** Fills `out` (length = product of dims) with the tensor's values. */
  fill(out: Float32Array): void;
}

const SCALAR_CODES: Record<GgufScalarType, number> = {
  u32: GgufType.UINT32,
  i32: GgufType.INT32,
  f32: GgufType.FLOAT32,
  bool: GgufType.BOOL,
  string: GgufType.STRING,
  u64: GgufType.UINT64,
};

/** Grows as it is written; the header is small (the vocabulary's strings are its biggest part). */
class ByteWriter {
  private buffer = Buffer.alloc(1 << 16);
  length = 0;

  private room(bytes: number): void {
    if (this.length + bytes <= this.buffer.length) return;
    let size = this.buffer.length * 2;
    while (size < this.length + bytes) size *= 2;
    const bigger = Buffer.alloc(size);
    this.buffer.copy(bigger, 0, 0, this.length);
    this.buffer = bigger;
  }

  u32(value: number): void {
    this.room(4);
    this.buffer.writeUInt32LE(value, this.length);
    this.length += 4;
  }

  i32(value: number): void {
    this.room(4);
    this.buffer.writeInt32LE(value, this.length);
    this.length += 4;
  }

  u64(value: number): void {
    this.room(8);
    this.buffer.writeBigUInt64LE(BigInt(value), this.length);
    this.length += 8;
  }

  f32(value: number): void {
    this.room(4);
    this.buffer.writeFloatLE(value, this.length);
    this.length += 4;
  }

  u8(value: number): void {
    this.room(1);
    this.buffer.writeUInt8(value, this.length);
    this.length += 1;
  }

  string(text: string): void {
    const bytes = Buffer.from(text, 'utf8');
    this.u64(bytes.length);
    this.room(bytes.length);
    bytes.copy(this.buffer, this.length);
    this.length += bytes.length;
  }

  pad(alignment: number): void {
    const padding = (alignment - (this.length % alignment)) % alignment;
    this.room(padding);
    this.buffer.fill(0, this.length, this.length + padding);
    this.length += padding;
  }

  bytes(): Buffer {
    return this.buffer.subarray(0, this.length);
  }
}

function writeValue(out: ByteWriter, value: GgufValue): void {
  switch (value.type) {
    case 'u32':
      out.u32(value.value);
      return;
    case 'i32':
      out.i32(value.value);
      return;
    case 'u64':
      out.u64(value.value);
      return;
    case 'f32':
      out.f32(value.value);
      return;
    case 'bool':
      out.u8(value.value ? 1 : 0);
      return;
    case 'string':
      out.string(value.value);
      return;
    case 'array':
      out.u32(SCALAR_CODES[value.of]);
      out.u64(value.value.length);
      for (const element of value.value) {
        if (value.of === 'string') out.string(element as string);
        else if (value.of === 'f32') out.f32(element as number);
        else out.i32(element as number);
      }
      return;
  }
}

function typeCode(value: GgufValue): number {
  return value.type === 'array' ? GgufType.ARRAY : SCALAR_CODES[value.type];
}

function elementCount(dims: readonly number[]): number {
  let count = 1;
  for (const d of dims) {
    if (!Number.isInteger(d) || d <= 0) throw new Error(`tensor dimension ${d} is not a positive integer`);
    count *= d;
  }
  return count;
}

/** Writes `tensors` with `metadata` to `file` (replaced atomically). Returns the file's size in bytes. */
export function writeGguf(file: string, metadata: Readonly<Record<string, GgufValue>>, tensors: readonly GgufTensor[]): number {
  const alignmentValue = metadata['general.alignment'];
  const alignment = alignmentValue && alignmentValue.type === 'u32' ? alignmentValue.value : GGUF_DEFAULT_ALIGNMENT;
  const names = new Set<string>();
  const header = new ByteWriter();
  for (const c of GGUF_MAGIC) header.u8(c.charCodeAt(0));
  header.u32(GGUF_VERSION);
  header.u64(tensors.length);
  const keys = Object.keys(metadata);
  header.u64(keys.length);
  for (const key of keys) {
    header.string(key);
    header.u32(typeCode(metadata[key]));
    writeValue(header, metadata[key]);
  }
  let offset = 0;
  for (const tensor of tensors) {
    if (names.has(tensor.name)) throw new Error(`tensor ${tensor.name} twice`);
    names.add(tensor.name);
    header.string(tensor.name);
    header.u32(tensor.dims.length);
    for (const d of tensor.dims) header.u64(d);
    header.u32(GGML_TYPE_F32);
    header.u64(offset);
    const bytes = elementCount(tensor.dims) * 4;
    offset += Math.ceil(bytes / alignment) * alignment;
  }
  header.pad(alignment);

  const tmp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, header.bytes());
    let size = header.length;
    for (const tensor of tensors) {
      const values = new Float32Array(elementCount(tensor.dims));
      tensor.fill(values);
      const data = Buffer.from(values.buffer, values.byteOffset, values.byteLength);
      fs.writeSync(fd, data);
      const padding = (alignment - (data.length % alignment)) % alignment;
      if (padding > 0) fs.writeSync(fd, Buffer.alloc(padding));
      size += data.length + padding;
    }
    fs.closeSync(fd);
    fs.renameSync(tmp, file);
    return size;
  } catch (error) {
    try {
      fs.closeSync(fd);
    } catch {
      // already closed
    }
    fs.rmSync(tmp, { force: true });
    throw error;
  }
}

/** A GGUF file's header read back: version, metadata (scalars and arrays as JS values) and tensor infos. For specs. */
export function readGgufHeader(file: string): { version: number; metadata: Record<string, unknown>; tensors: { name: string; dims: number[]; type: number; offset: number }[] } {
  const buffer = fs.readFileSync(file);
  let at = 0;
  const u32 = (): number => {
    const v = buffer.readUInt32LE(at);
    at += 4;
    return v;
  };
  const u64 = (): number => {
    const v = Number(buffer.readBigUInt64LE(at));
    at += 8;
    return v;
  };
  const str = (): string => {
    const n = u64();
    const s = buffer.toString('utf8', at, at + n);
    at += n;
    return s;
  };
  const scalar = (type: number): unknown => {
    switch (type) {
      case GgufType.UINT32:
        return u32();
      case GgufType.INT32: {
        const v = buffer.readInt32LE(at);
        at += 4;
        return v;
      }
      case GgufType.FLOAT32: {
        const v = buffer.readFloatLE(at);
        at += 4;
        return v;
      }
      case GgufType.BOOL:
        return buffer.readUInt8(at++) !== 0;
      case GgufType.STRING:
        return str();
      case GgufType.UINT64:
        return u64();
      default:
        throw new Error(`value type ${type} not read here`);
    }
  };
  if (buffer.toString('latin1', 0, 4) !== GGUF_MAGIC) throw new Error(`${file} is not a GGUF file`);
  at = 4;
  const version = u32();
  const tensorCount = u64();
  const metadataCount = u64();
  const metadata: Record<string, unknown> = {};
  for (let i = 0; i < metadataCount; i++) {
    const key = str();
    const type = u32();
    if (type === GgufType.ARRAY) {
      const of = u32();
      const n = u64();
      const values: unknown[] = [];
      for (let j = 0; j < n; j++) values.push(scalar(of));
      metadata[key] = values;
    } else {
      metadata[key] = scalar(type);
    }
  }
  const tensors = [];
  for (let i = 0; i < tensorCount; i++) {
    const name = str();
    const n = u32();
    const dims: number[] = [];
    for (let j = 0; j < n; j++) dims.push(u64());
    tensors.push({ name, dims, type: u32(), offset: u64() });
  }
  return { version, metadata, tensors };
}
