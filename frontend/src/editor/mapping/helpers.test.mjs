// Unit tests of the mapping editor's pure helpers: `node --test frontend/src/editor/mapping/`
// (run by tests/browser/test_mapping_editor.py::test_mapping_helpers_unit).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  buildConstructor,
  errorRange,
  formatExpression,
  isSimplePath,
  lineColumn,
  parseConstructor,
  splitTarget,
} from './constructor.js';
import { fieldPaths, quoteName, schemaTargets, sourceTree } from './fieldPaths.js';

const ORDER = {
  order_number: 1001,
  customer: { first_name: 'Zoë', 'last name': 'X' },
  line_items: [{ sku: 'A', qty: 1 }, { sku: 'B', price: '2.00' }],
  tags: ['web'],
};

test('field paths follow JSONata: arrays map implicitly, odd names in backticks', () => {
  const paths = fieldPaths(ORDER).map((p) => p.path);
  assert.deepEqual(paths, [
    'order_number',
    'customer',
    'customer.first_name',
    'customer.`last name`',
    'line_items',
    'line_items.sku',
    'line_items.qty',
    'line_items.price', // merged from every element, not only the first
    'tags',
  ]);
  assert.equal(quoteName('a-b'), '`a-b`');
  assert.equal(sourceTree(ORDER)[2].itemType, 'object');
  assert.equal(sourceTree(ORDER)[3].itemType, 'string');
  assert.deepEqual(fieldPaths(null), []);
  assert.deepEqual(fieldPaths([{ a: 1 }]).map((p) => p.path), ['a']);
});

test('schema targets flatten nested objects and resolve $defs', () => {
  const schema = {
    required: ['orderNumber'],
    properties: {
      orderNumber: { type: 'string' },
      customer: { $ref: '#/$defs/customer' },
      lines: { type: 'array', items: { type: 'object' } },
    },
    $defs: { customer: { type: 'object', properties: { email: { type: ['string', 'null'] } } } },
  };
  assert.deepEqual(
    schemaTargets(schema).map((t) => [t.path, t.type, t.required]),
    [
      ['orderNumber', 'string', true],
      ['customer.email', 'string', false],
      ['lines', 'array', false],
    ],
  );
});

test('a constructor reads back into pairs and writes out the same mapping', () => {
  const text = `{
  'ref': order_number,
  "customer": { "name": customer.first_name, 'x': $uppercase(/* c */ customer.\`last name\`) },
  "lines": [line_items.{ 'sku': sku }]
}`;
  const parsed = parseConstructor(text);
  assert.deepEqual(
    parsed.pairs.map((p) => [p.target.join('.'), p.source, p.simple]),
    [
      ['ref', 'order_number', true],
      ['customer.name', 'customer.first_name', true],
      ['customer.x', '$uppercase(/* c */ customer.`last name`)', false],
      ['lines', "[line_items.{ 'sku': sku }]", false],
    ],
  );
  const rebuilt = buildConstructor(parsed.pairs);
  assert.equal(
    rebuilt,
    '{\n  "ref": order_number,\n  "customer": {\n    "name": customer.first_name,\n' +
      '    "x": $uppercase(/* c */ customer.`last name`)\n  },\n  "lines": [line_items.{ \'sku\': sku }]\n}',
  );
  assert.deepEqual(parseConstructor(rebuilt).pairs, parsed.pairs);
});

test('what the mapper cannot show stays text-only', () => {
  const texts = ['$sum(x)', '{"a": b}.a', '{"a": b} ~> $string', '{ /* c */ "a": b}', '{"a": b, /* c */ "d": e}', '{"a": }', '{a: b}'];
  for (const text of texts) {
    assert.equal(parseConstructor(text), null, text);
  }
  assert.deepEqual(parseConstructor('  '), { pairs: [] });
  assert.deepEqual(parseConstructor('{}'), { pairs: [] });
  assert.equal(isSimplePath('customer . email'), true);
  assert.equal(isSimplePath('$x.y'), false);
  assert.equal(isSimplePath('"text"'), false);
  assert.equal(isSimplePath('null'), false);
  assert.deepEqual(splitTarget(' customer. email '), ['customer', 'email']);
  assert.equal(buildConstructor([{ target: ['a'], source: '  ' }]), '');
});

test('format puts one field per line and keeps strings and regexes verbatim', () => {
  assert.equal(
    formatExpression("{'a':b,'s':'x,  {y}','r':$match(s, /a{2}, b/),'n':{'m':[1,2]},'e':{}}"),
    "{\n  'a': b,\n  's': 'x,  {y}',\n  'r': $match(s, /a{2}, b/),\n  'n': {\n    'm': [1, 2]\n  },\n  'e': {}\n}",
  );
  assert.equal(formatExpression('  a   +\n b '), 'a + b');
  assert.equal(formatExpression('a / 2'), 'a / 2');
});

test('error positions become the range of the offending token', () => {
  assert.deepEqual(errorRange('$sum(', 5), { from: 4, to: 5 });
  assert.deepEqual(errorRange('foo bar', 7), { from: 4, to: 7 });
  assert.deepEqual(errorRange('abc', 99), { from: 0, to: 3 });
  assert.equal(errorRange('abc', null), null);
  assert.deepEqual(lineColumn('{\n  x: }', 7), { line: 2, column: 5 });
});
