// A reader for nginx.conf text that follows nginx's own tokenizer (ngx_conf_read_token in
// src/core/ngx_conf_file.c, nginx 1.26) closely enough to see what nginx would see: which
// directives, with which arguments, in which blocks. The generator specs compare the directive
// tree of a config rendered from hostile values against one rendered from safe values.
//
// nginx's rules, as implemented here:
// - whitespace (space, tab, CR, LF) separates words; `;` ends a directive, `{` ends it and opens
//   its block, `}` closes a block — `;` `{` `}` only where a word may start, or (`;` `{`) right
//   after a word: inside an unquoted word, `}` is an ordinary character;
// - `#` starts a comment to the end of the line, only where a word may start (`a#b` is one word);
// - a word may start with `"` or `'`: it runs to the matching unescaped quote, `;{}#` and
//   whitespace included, and must be followed by whitespace, `;`, `{` or `)`;
// - a backslash makes the next character ordinary (in quoted and unquoted words alike); the word's
//   value then unescapes `\"` `\'` `\\` to the character and `\t` `\r` `\n` to tab, CR, LF, and
//   keeps the backslash of any other pair;
// - `${` inside a word does not open a block (a variable in braces), `$` itself is ordinary.

export interface Directive {
  name: string;
  args: string[];
  /** The block's directives, for block directives (`http {}`, `location / {}`); else null. */
  block: Directive[] | null;
  line: number;
}

export class NginxSyntaxError extends Error {}

type Token = { kind: 'word'; value: string; line: number } | { kind: ';' | '{' | '}'; line: number };

function unescape(raw: string): string {
  let out = '';
  for (let i = 0; i < raw.length; i++) {
    const ch = raw[i];
    if (ch === '\\' && i + 1 < raw.length) {
      const next = raw[i + 1];
      if (next === '"' || next === "'" || next === '\\') {
        out += next;
        i++;
        continue;
      }
      if (next === 't' || next === 'r' || next === 'n') {
        out += next === 't' ? '\t' : next === 'r' ? '\r' : '\n';
        i++;
        continue;
      }
    }
    out += ch;
  }
  return out;
}

const SPACE = (ch: string) => ch === ' ' || ch === '\t' || ch === '\r' || ch === '\n';

export function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let line = 1;
  let i = 0;
  while (i < text.length) {
    const ch = text[i];
    if (ch === '\n') line++;
    if (SPACE(ch)) {
      i++;
      continue;
    }
    if (ch === '#') {
      while (i < text.length && text[i] !== '\n') i++;
      continue;
    }
    if (ch === ';' || ch === '{' || ch === '}') {
      tokens.push({ kind: ch, line });
      i++;
      continue;
    }
    const startLine = line;
    if (ch === '"' || ch === "'") {
      let j = i + 1;
      while (j < text.length && text[j] !== ch) {
        if (text[j] === '\n') line++;
        if (text[j] === '\\') {
          j++;
          if (text[j] === '\n') line++;
        }
        j++;
      }
      if (j >= text.length) throw new NginxSyntaxError(`line ${startLine}: unterminated ${ch} string`);
      tokens.push({ kind: 'word', value: unescape(text.slice(i + 1, j)), line: startLine });
      i = j + 1;
      // nginx: after a closing quote only whitespace, `;` or `{` may come, or the `)` that closes
      // an `if (...)` condition (which then starts a word of its own).
      if (i < text.length && !SPACE(text[i]) && text[i] !== ';' && text[i] !== '{' && text[i] !== ')') {
        throw new NginxSyntaxError(`line ${line}: unexpected "${text[i]}" after a quoted string`);
      }
      continue;
    }
    // An unquoted word: runs to whitespace, `;` or `{` (a `{` right after `$` belongs to it).
    let j = i;
    while (j < text.length) {
      const c = text[j];
      if (c === '\\') {
        if (text[j + 1] === '\n') line++;
        j += 2;
        continue;
      }
      if (c === '$' && text[j + 1] === '{') {
        j += 2;
        continue;
      }
      if (SPACE(c) || c === ';' || c === '{') break;
      j++;
    }
    tokens.push({ kind: 'word', value: unescape(text.slice(i, Math.min(j, text.length))), line: startLine });
    i = j;
  }
  return tokens;
}

/** The directive tree of `text`; throws NginxSyntaxError where nginx would refuse the syntax. */
export function parseNginxConf(text: string): Directive[] {
  const tokens = tokenize(text);
  let at = 0;
  function block(top: boolean): Directive[] {
    const directives: Directive[] = [];
    let words: { value: string; line: number }[] = [];
    while (at < tokens.length) {
      const token = tokens[at++];
      if (token.kind === 'word') {
        words.push({ value: token.value, line: token.line });
        continue;
      }
      if (token.kind === '}') {
        if (words.length > 0) throw new NginxSyntaxError(`line ${token.line}: unexpected "}"`);
        if (top) throw new NginxSyntaxError(`line ${token.line}: unexpected "}" at the top level`);
        return directives;
      }
      if (words.length === 0) throw new NginxSyntaxError(`line ${token.line}: unexpected "${token.kind}"`);
      const directive: Directive = { name: words[0].value, args: words.slice(1).map((w) => w.value), block: null, line: words[0].line };
      words = [];
      if (token.kind === '{') directive.block = block(false);
      directives.push(directive);
    }
    if (words.length > 0) throw new NginxSyntaxError('unexpected end of file, expecting ";" or "}"');
    if (!top) throw new NginxSyntaxError('unexpected end of file, expecting "}"');
    return directives;
  }
  return block(true);
}

/**
 * The tree's shape: directive names, block nesting and argument counts, one line per directive
 * (`http {`, `  location 1 {`, `  allow 1`). `argCountsOf` decides per directive whether its
 * argument count belongs to the shape (listen's flags may vary).
 */
export function shapeOf(tree: Directive[], argCountsOf: (name: string) => boolean = () => true, indent = ''): string[] {
  const lines: string[] = [];
  for (const d of tree) {
    lines.push(indent + d.name + (argCountsOf(d.name) ? ' ' + d.args.length : '') + (d.block ? ' {' : ''));
    if (d.block) lines.push(...shapeOf(d.block, argCountsOf, indent + '  '), indent + '}');
  }
  return lines;
}

/** Every directive named `name`, depth first. */
export function findAll(tree: Directive[], name: string): Directive[] {
  const found: Directive[] = [];
  for (const d of tree) {
    if (d.name === name) found.push(d);
    if (d.block) found.push(...findAll(d.block, name));
  }
  return found;
}
