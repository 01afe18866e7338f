// Reading and writing JSONata object constructors, formatting, and error positions.
//
// The visual mapper edits expressions of the form { "target": source.path, ... } (nested
// objects allowed). parseConstructor() reads such an expression back into pairs: a value
// that is a plain field path is "simple" (the mapper shows it as a pick), anything else is
// kept verbatim as text. buildConstructor() writes pairs back. An expression that is not an
// object constructor (or has comments between its fields) gives null: it stays text-only.

// ---- scanner -----------------------------------------------------------------------------

const OPERATORS = [':=', '~>', '!=', '<=', '>=', '..', '**', '?:', '??'];
const OPERAND_END = /[A-Za-z0-9_$)\]}"'`]$/;

/** Splits JSONata text into tokens: space, comment, string, name (backticks), regex, word, punct. */
export function scan(text) {
  const tokens = [];
  let i = 0;
  let lastSignificant = null;
  const push = (type, start, end) => {
    const token = { type, text: text.slice(start, end), start, end };
    tokens.push(token);
    if (type !== 'space' && type !== 'comment') lastSignificant = token;
  };
  while (i < text.length) {
    const ch = text[i];
    const start = i;
    if (/\s/.test(ch)) {
      while (i < text.length && /\s/.test(text[i])) i++;
      push('space', start, i);
    } else if (ch === '/' && text[i + 1] === '*') {
      const end = text.indexOf('*/', i + 2);
      i = end < 0 ? text.length : end + 2;
      push('comment', start, i);
    } else if (ch === '"' || ch === "'") {
      i++;
      while (i < text.length && text[i] !== ch) i += text[i] === '\\' ? 2 : 1;
      i = Math.min(i + 1, text.length);
      push('string', start, i);
    } else if (ch === '`') {
      const end = text.indexOf('`', i + 1);
      i = end < 0 ? text.length : end + 1;
      push('name', start, i);
    } else if (ch === '/' && !(lastSignificant && OPERAND_END.test(lastSignificant.text))) {
      i++;
      while (i < text.length && text[i] !== '/') i += text[i] === '\\' ? 2 : 1;
      i = Math.min(i + 1, text.length);
      while (i < text.length && /[a-z]/.test(text[i])) i++;
      push('regex', start, i);
    } else if (/[A-Za-z0-9_$]/.test(ch)) {
      while (i < text.length && /[A-Za-z0-9_$]/.test(text[i])) i++;
      push('word', start, i);
    } else {
      const op = OPERATORS.find((o) => text.startsWith(o, i));
      i += op ? op.length : 1;
      push('punct', start, i);
    }
  }
  return tokens;
}

// ---- object constructors ------------------------------------------------------------------

const SIMPLE_PATH = /^(`[^`]+`|[A-Za-z_][A-Za-z0-9_]*)(\s*\.\s*(`[^`]+`|[A-Za-z_][A-Za-z0-9_]*))*$/;

/** True for a plain field path such as `customer.email` or `line_items.sku`. */
export function isSimplePath(source) {
  const s = String(source || '').trim();
  return SIMPLE_PATH.test(s) && !/^(true|false|null|and|or|in|function)$/.test(s);
}

function decodeKey(token) {
  if (token.type !== 'string') return null;
  const body = token.text.slice(1, -1);
  if (token.text[0] === '"') {
    try {
      return JSON.parse(token.text);
    } catch {
      return null;
    }
  }
  return body.replace(/\\(.)/g, '$1');
}

/**
 * Reads `{ "a": x, "b": { "c": y } }` into { pairs: [{ target: ['a'], source: 'x', simple }] },
 * or { pairs: [] } for an empty expression; null when the mapper cannot show it.
 */
export function parseConstructor(text) {
  if (!String(text || '').trim()) return { pairs: [] };
  const all = scan(text);
  const toks = all.filter((t) => t.type !== 'space');
  let i = 0;
  const pairs = [];

  function matchingEnd(from) {
    // index of the token that closes toks[from] (an opening bracket), or -1
    let depth = 0;
    for (let k = from; k < toks.length; k++) {
      const t = toks[k].text;
      if (toks[k].type !== 'punct') continue;
      if (t === '{' || t === '[' || t === '(') depth++;
      else if (t === '}' || t === ']' || t === ')') {
        depth--;
        if (depth === 0) return k;
      }
    }
    return -1;
  }

  function parseObject(prefix) {
    if (toks[i]?.text !== '{' || toks[i].type !== 'punct') return false;
    i++;
    if (toks[i]?.text === '}') {
      i++;
      return true;
    }
    for (;;) {
      const key = toks[i] ? decodeKey(toks[i]) : null;
      if (key === null) return false;
      i++;
      if (toks[i]?.text !== ':' || toks[i].type !== 'punct') return false;
      i++;
      // The value runs to the next ',' or '}' outside brackets.
      const first = i;
      let depth = 0;
      while (i < toks.length) {
        const t = toks[i];
        if (t.type === 'punct') {
          if (t.text === '{' || t.text === '[' || t.text === '(') depth++;
          else if (t.text === '}' || t.text === ']' || t.text === ')') {
            if (depth === 0) break;
            depth--;
          } else if (t.text === ',' && depth === 0) break;
        }
        i++;
      }
      if (i === first || i >= toks.length) return false;
      const last = i - 1;
      const target = [...prefix, key];
      if (toks[first].text === '{' && toks[first].type === 'punct' && matchingEnd(first) === last && last > first + 1) {
        const save = i;
        i = first;
        if (!parseObject(target) || i !== last + 1) return false;
        i = save;
      } else {
        const source = text.slice(toks[first].start, toks[last].end);
        pairs.push({ target, source, simple: isSimplePath(source) });
      }
      if (toks[i].text === ',') {
        i++;
        continue;
      }
      i++; // the closing '}'
      return true;
    }
  }

  if (!parseObject([])) return null;
  // Anything after the closing brace ({…}.x, {…} ~> $f, a trailing comment): text only.
  if (i < toks.length) return null;
  return { pairs };
}

/** Writes pairs back as a formatted constructor (pairs without a source are left out). */
export function buildConstructor(pairs, indent = '  ') {
  const root = new Map();
  for (const p of pairs) {
    const source = String(p.source ?? '').trim();
    if (!source || !p.target.length) continue;
    let node = root;
    for (const seg of p.target.slice(0, -1)) {
      if (!(node.get(seg) instanceof Map)) node.set(seg, new Map());
      node = node.get(seg);
    }
    node.set(p.target[p.target.length - 1], source);
  }
  function render(map, depth) {
    if (!map.size) return '{}';
    const pad = indent.repeat(depth + 1);
    const lines = [...map.entries()].map(
      ([key, value]) => `${pad}${JSON.stringify(key)}: ${value instanceof Map ? render(value, depth + 1) : value}`,
    );
    return `{\n${lines.join(',\n')}\n${indent.repeat(depth)}}`;
  }
  return root.size ? render(root, 0) : '';
}

export const targetKey = (segments) => segments.join('.');
export const splitTarget = (path) =>
  String(path)
    .split('.')
    .map((s) => s.trim())
    .filter(Boolean);

// ---- formatting ---------------------------------------------------------------------------

/**
 * Pretty-prints an expression: one field per line in object constructors, two-space indent,
 * single spaces elsewhere. Strings, names, regexes and comments are kept verbatim.
 */
export function formatExpression(text, indent = '  ') {
  const toks = scan(String(text || ''));
  const stack = [];
  let depth = 0;
  let out = '';
  let skipSpace = false;
  const newline = () => `\n${indent.repeat(depth)}`;
  const nextSignificant = (k) => toks.slice(k + 1).find((t) => t.type !== 'space');
  toks.forEach((t, k) => {
    if (t.type === 'space') {
      if (!skipSpace && out && !out.endsWith(' ') && !out.endsWith('\n')) out += ' ';
      return;
    }
    skipSpace = false;
    const top = stack[stack.length - 1];
    if (t.type === 'punct' && t.text === '{') {
      const empty = nextSignificant(k)?.text === '}';
      stack.push({ ch: '{', empty });
      if (empty) out += '{';
      else {
        depth++;
        out += '{' + newline();
        skipSpace = true;
      }
    } else if (t.type === 'punct' && (t.text === '[' || t.text === '(')) {
      stack.push({ ch: t.text });
      out += t.text;
    } else if (t.type === 'punct' && t.text === '}') {
      const open = stack.pop();
      if (open && open.ch === '{' && !open.empty) {
        depth = Math.max(0, depth - 1);
        out = out.trimEnd() + newline() + '}';
      } else out = out.trimEnd() + '}';
    } else if (t.type === 'punct' && (t.text === ']' || t.text === ')')) {
      stack.pop();
      out = out.trimEnd() + t.text;
    } else if (t.type === 'punct' && t.text === ',' && top?.ch === '{') {
      out = out.trimEnd() + ',' + newline();
      skipSpace = true;
    } else if (t.type === 'punct' && t.text === ',') {
      out = out.trimEnd() + ', ';
      skipSpace = true;
    } else if (t.type === 'punct' && t.text === ':' && top?.ch === '{') {
      out = out.trimEnd() + ': ';
      skipSpace = true;
    } else {
      out += t.text;
    }
  });
  return out.trim();
}

// ---- error positions ----------------------------------------------------------------------

/**
 * The text range to underline for a JSONata error `position` (the library reports the
 * offset just past the offending token): { from, to }, or null without a position.
 */
export function errorRange(text, position) {
  if (position === null || position === undefined || Number.isNaN(Number(position))) return null;
  const len = text.length;
  const to = Math.max(0, Math.min(Number(position), len));
  let from = to;
  while (from > 0 && /[A-Za-z0-9_$]/.test(text[from - 1])) from--;
  if (from === to && to > 0) from = to - 1;
  while (from < to && /\s/.test(text[from]) && from < to - 1) from++;
  return { from, to };
}

/** 1-based line and column of an offset. */
export function lineColumn(text, offset) {
  const before = text.slice(0, Math.max(0, Math.min(offset, text.length)));
  const line = before.split('\n').length;
  return { line, column: offset - (before.lastIndexOf('\n') + 1) };
}
