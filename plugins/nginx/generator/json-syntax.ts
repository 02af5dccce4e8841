// Where strict JSON text goes wrong, as "line L, column C: what": Node 20's JSON.parse names no
// position for most errors ("Unexpected token ']', ..."... is not valid JSON", the text quoted
// with its newlines), and a balancer file's author needs the line to look at. A recursive-descent
// check of RFC 8259's grammar; JSON.parse still builds the value.

import { quote } from '../../../shared/config/validate';

export interface JsonSyntaxError {
  line: number;
  column: number;
  message: string;
}

/** null when `text` is one JSON value (with surrounding whitespace); else the first error. */
export function jsonSyntaxError(text: string): JsonSyntaxError | null {
  let at = 0;
  const fail = (message: string): never => {
    throw { at, message };
  };
  const space = () => {
    while (at < text.length && (text[at] === ' ' || text[at] === '\t' || text[at] === '\n' || text[at] === '\r')) at++;
  };
  const found = () => (at < text.length ? quote(text[at]) : 'the end of the file');
  const expect = (char: string) => {
    if (text[at] !== char) fail('expected ' + quote(char) + ', found ' + found());
    at++;
  };
  const string = () => {
    expect('"');
    while (at < text.length && text[at] !== '"') {
      const code = text.charCodeAt(at);
      if (code < 0x20) fail('a control character must be escaped inside a string');
      if (text[at] === '\\') {
        at++;
        if (text[at] === 'u') {
          if (!/^[0-9A-Fa-f]{4}$/.test(text.slice(at + 1, at + 5))) fail('\\u must be followed by 4 hex digits');
          at += 5;
          continue;
        }
        if ('"\\/bfnrt'.indexOf(text[at]) < 0 || at >= text.length) fail('unknown escape \\' + (text[at] ?? ''));
      }
      at++;
    }
    expect('"');
  };
  const value = (): void => {
    space();
    const char = text[at];
    if (char === '{') {
      at++;
      space();
      if (text[at] === '}') {
        at++;
        return;
      }
      for (;;) {
        space();
        if (text[at] !== '"') fail(text[at] === '}' ? 'a trailing comma is not allowed in JSON' : 'expected a "quoted" key, found ' + found());
        string();
        space();
        expect(':');
        value();
        space();
        if (text[at] === ',') {
          at++;
          continue;
        }
        expect('}');
        return;
      }
    }
    if (char === '[') {
      at++;
      space();
      if (text[at] === ']') {
        at++;
        return;
      }
      for (;;) {
        space();
        if (text[at] === ']') fail('a trailing comma is not allowed in JSON');
        value();
        space();
        if (text[at] === ',') {
          at++;
          continue;
        }
        expect(']');
        return;
      }
    }
    if (char === '"') return string();
    const literal = /^(true|false|null|-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?)/.exec(text.slice(at, at + 400));
    if (literal === null) fail('expected a value, found ' + found());
    at += (literal as RegExpExecArray)[0].length;
  };
  try {
    value();
    space();
    if (at < text.length) fail('expected the end of the file, found ' + found());
    return null;
  } catch (thrown) {
    const error = thrown as { at: number; message: string };
    const before = text.slice(0, error.at);
    return { line: before.split('\n').length, column: error.at - before.lastIndexOf('\n'), message: error.message };
  }
}
