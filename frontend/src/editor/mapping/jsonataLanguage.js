// JSONata for CodeMirror 6: a StreamLanguage tokenizer, a highlight style and completion of
// $functions and of field paths taken from the sample input. (No CM6 JSONata package exists
// on npm; see shared docs/frontend.md.)
import { autocompletion } from '@codemirror/autocomplete';
import { HighlightStyle, StreamLanguage, syntaxHighlighting, syntaxTree } from '@codemirror/language';
import { tags as t } from '@lezer/highlight';

const KEYWORDS = new Set(['and', 'or', 'in', 'function', 'lambda']);
const ATOMS = new Set(['true', 'false', 'null']);

function readComment(stream, state) {
  while (!stream.eol()) {
    if (stream.match('*/')) {
      state.inComment = false;
      break;
    }
    stream.next();
  }
  return 'comment';
}

export const jsonataLanguage = StreamLanguage.define({
  name: 'jsonata',
  startState: () => ({ inComment: false }),
  token(stream, state) {
    if (state.inComment) return readComment(stream, state);
    if (stream.eatSpace()) return null;
    if (stream.match('/*')) {
      state.inComment = true;
      return readComment(stream, state);
    }
    const ch = stream.peek();
    if (ch === '"' || ch === "'") {
      stream.next();
      let escaped = false;
      while (!stream.eol()) {
        const c = stream.next();
        if (c === ch && !escaped) break;
        escaped = !escaped && c === '\\';
      }
      return 'string';
    }
    if (ch === '`') {
      stream.next();
      if (!stream.skipTo('`')) stream.skipToEnd();
      else stream.next();
      return 'propertyName';
    }
    if (stream.match(/^\d+(\.\d+)?([eE][+-]?\d+)?/)) return 'number';
    if (stream.match(/^\$[A-Za-z0-9_]*/)) {
      return stream.peek() === '(' ? 'variableName.function' : 'variableName.special';
    }
    if (stream.match(/^[A-Za-z_][A-Za-z0-9_]*/)) {
      const word = stream.current();
      if (KEYWORDS.has(word)) return 'keyword';
      if (ATOMS.has(word)) return word === 'null' ? 'null' : 'bool';
      return 'propertyName';
    }
    if (stream.match(/^(:=|~>|!=|<=|>=|\.\.|\?:|\?\?|[-+*/%&=<>!?:^~@#|.])/)) return 'operator';
    if (stream.match(/^[{}[\]()]/)) return 'bracket';
    stream.next();
    return 'punctuation';
  },
  languageData: {
    commentTokens: { block: { open: '/*', close: '*/' } },
    closeBrackets: { brackets: ['(', '[', '{', "'", '"', '`'] },
  },
});

export const jsonataHighlight = syntaxHighlighting(
  HighlightStyle.define([
    { tag: t.keyword, color: '#7c3aed', fontWeight: '600' },
    { tag: [t.bool, t.null], color: '#b45309' },
    { tag: t.number, color: '#0e7490' },
    { tag: t.string, color: '#15803d' },
    { tag: t.comment, color: '#6b7280', fontStyle: 'italic' },
    { tag: t.function(t.variableName), color: '#1d4ed8', fontWeight: '600' },
    { tag: t.special(t.variableName), color: '#be185d' },
    { tag: t.propertyName, color: '#111827' },
    { tag: t.operator, color: '#9333ea' },
    { tag: t.bracket, color: '#475569' },
  ]),
);

// The JSONata 2.x function library: [name, signature, summary].
export const FUNCTIONS = [
  ['string', '(arg, prettify?)', 'Cast to a string'],
  ['length', '(str)', 'Number of characters'],
  ['substring', '(str, start, length?)', 'Part of a string'],
  ['substringBefore', '(str, chars)', 'Text before the first occurrence'],
  ['substringAfter', '(str, chars)', 'Text after the first occurrence'],
  ['uppercase', '(str)', 'To upper case'],
  ['lowercase', '(str)', 'To lower case'],
  ['trim', '(str)', 'Collapse and trim whitespace'],
  ['pad', '(str, width, char?)', 'Pad to a width'],
  ['contains', '(str, pattern)', 'Contains a substring or regex match'],
  ['split', '(str, separator, limit?)', 'Split into an array'],
  ['join', '(array, separator?)', 'Join strings'],
  ['match', '(str, pattern, limit?)', 'Regex matches'],
  ['replace', '(str, pattern, replacement, limit?)', 'Replace occurrences'],
  ['eval', '(expr, context?)', 'Evaluate an expression'],
  ['base64encode', '(str)', 'Base64-encode'],
  ['base64decode', '(str)', 'Base64-decode'],
  ['encodeUrlComponent', '(str)', 'URL-encode a component'],
  ['encodeUrl', '(str)', 'URL-encode'],
  ['decodeUrlComponent', '(str)', 'URL-decode a component'],
  ['decodeUrl', '(str)', 'URL-decode'],
  ['number', '(arg)', 'Cast to a number'],
  ['abs', '(number)', 'Absolute value'],
  ['floor', '(number)', 'Round down'],
  ['ceil', '(number)', 'Round up'],
  ['round', '(number, precision?)', 'Round (half to even)'],
  ['power', '(base, exponent)', 'Power'],
  ['sqrt', '(number)', 'Square root'],
  ['random', '()', 'Random number in [0, 1)'],
  ['formatNumber', '(number, picture, options?)', 'Format a number'],
  ['formatBase', '(number, radix?)', 'Number in another base'],
  ['formatInteger', '(number, picture)', 'Format an integer'],
  ['parseInteger', '(string, picture)', 'Parse an integer'],
  ['sum', '(array)', 'Sum of numbers'],
  ['max', '(array)', 'Largest number'],
  ['min', '(array)', 'Smallest number'],
  ['average', '(array)', 'Mean of numbers'],
  ['boolean', '(arg)', 'Cast to a boolean'],
  ['not', '(arg)', 'Logical not'],
  ['exists', '(arg)', 'True if the value is defined'],
  ['count', '(array)', 'Number of items'],
  ['append', '(array1, array2)', 'Concatenate arrays'],
  ['sort', '(array, function?)', 'Sort'],
  ['reverse', '(array)', 'Reverse'],
  ['shuffle', '(array)', 'Shuffle'],
  ['distinct', '(array)', 'Unique values'],
  ['zip', '(array1, …)', 'Convolve arrays'],
  ['keys', '(object)', 'Keys of an object'],
  ['lookup', '(object, key)', 'Value of a key'],
  ['spread', '(object)', 'Split an object into key/value objects'],
  ['merge', '(array<object>)', 'Merge objects'],
  ['sift', '(object, function)', 'Keep matching key/value pairs'],
  ['each', '(object, function)', 'Map key/value pairs'],
  ['error', '(message)', 'Raise an error'],
  ['assert', '(condition, message)', 'Raise if false'],
  ['type', '(value)', 'Type name of a value'],
  ['now', '(picture?, timezone?)', 'Current timestamp (ISO 8601)'],
  ['millis', '()', 'Current time in ms since the epoch'],
  ['fromMillis', '(number, picture?, timezone?)', 'Milliseconds to a timestamp'],
  ['toMillis', '(timestamp, picture?)', 'Timestamp to milliseconds'],
  ['map', '(array, function)', 'Apply a function to each item'],
  ['filter', '(array, function)', 'Keep items the function accepts'],
  ['single', '(array, function?)', 'The one matching item'],
  ['reduce', '(array, function, init?)', 'Fold an array'],
];

// Offered first among equally good matches.
const COMMON = new Set(['string', 'number', 'sum', 'count', 'join', 'map', 'exists', 'lookup', 'now', 'round']);

function inStringOrComment(state, pos) {
  const node = syntaxTree(state).resolveInner(pos, -1);
  return /string|comment/i.test(node.type.name);
}

/**
 * Completion of `$functions` and of field paths; `getPaths()` returns [{ path, type }] of
 * the current sample (read at completion time, so a new sample is picked up at once).
 */
export function jsonataCompletion(getPaths) {
  const functionOptions = FUNCTIONS.map(([name, signature, info]) => ({
    label: `$${name}`,
    type: 'function',
    detail: signature,
    info,
    apply: `$${name}(`,
    boost: COMMON.has(name) ? 1 : 0,
  }));
  return autocompletion({
    activateOnTyping: true,
    override: [
      (context) => {
        if (inStringOrComment(context.state, context.pos)) return null;
        const dollar = context.matchBefore(/\$[A-Za-z0-9_]*/);
        if (dollar) return { from: dollar.from, options: functionOptions, validFor: /^\$[A-Za-z0-9_]*$/ };
        const word = context.matchBefore(/[A-Za-z_][A-Za-z0-9_.]*/);
        if (!word && !context.explicit) return null;
        const options = getPaths().map((p) => ({ label: p.path, type: 'property', detail: p.type }));
        if (!options.length) return null;
        return { from: word ? word.from : context.pos, options, validFor: /^[A-Za-z0-9_.]*$/ };
      },
    ],
  });
}
