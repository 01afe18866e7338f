// Field paths of a sample message, as JSONata spells them.
//
// JSONata maps over arrays on its own, so `line_items.sku` is the path of every line's SKU:
// array levels do not appear in the path. Names that are not plain identifiers are quoted
// with backticks (`note attributes`).

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;
const MAX_NODES = 2000; // a huge sample must not freeze the tree or the completion list

/** One path segment as written in an expression. */
export function quoteName(name) {
  return IDENT.test(name) ? name : '`' + String(name).replace(/`/g, '') + '`';
}

export function joinPath(parent, name) {
  const segment = quoteName(name);
  return parent ? `${parent}.${segment}` : segment;
}

export function typeOf(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value; // object | string | number | boolean
}

// The first object items of an array stand for its element shape (their keys merged).
function elementShape(list) {
  const objects = list.filter((v) => v && typeof v === 'object' && !Array.isArray(v)).slice(0, 20);
  if (!objects.length) return list.length ? list[0] : undefined;
  const shape = {};
  for (const obj of objects) {
    for (const [key, value] of Object.entries(obj)) if (!(key in shape)) shape[key] = value;
  }
  return shape; // keys in first-seen order, the first element's values as examples
}

/**
 * The sample as a tree: [{ name, path, type, example, children }]. Arrays show the shape
 * of their elements as children (`type: 'array'`, `itemType`).
 */
export function sourceTree(sample) {
  let budget = MAX_NODES;
  function walk(value, parent) {
    if (!value || typeof value !== 'object') return [];
    const obj = Array.isArray(value) ? elementShape(value) : value;
    if (!obj || typeof obj !== 'object' || Array.isArray(obj)) return [];
    const nodes = [];
    for (const [name, child] of Object.entries(obj)) {
      if (budget-- <= 0) break;
      const path = joinPath(parent, name);
      const type = typeOf(child);
      const node = { name, path, type, example: undefined, children: [] };
      if (type === 'array') {
        const shape = elementShape(child);
        node.itemType = typeOf(shape);
        node.children = node.itemType === 'object' ? walk(child, path) : [];
        node.example = node.itemType === 'object' ? undefined : shape;
      } else if (type === 'object') {
        node.children = walk(child, path);
      } else {
        node.example = child;
      }
      nodes.push(node);
    }
    return nodes;
  }
  return walk(sample, '');
}

/** Every path of the tree, depth first: [{ path, type }]. */
export function flattenTree(tree) {
  const out = [];
  (function visit(nodes) {
    for (const n of nodes) {
      out.push({ path: n.path, type: n.type === 'array' ? `array of ${n.itemType}` : n.type });
      visit(n.children);
    }
  })(tree);
  return out;
}

/** Every field path of a sample (for completion and the mapper's pickers). */
export function fieldPaths(sample) {
  return flattenTree(sourceTree(sample));
}

/**
 * Target fields of a JSON Schema (object properties, nested objects as dotted paths; arrays
 * are one field, since one source expression fills them):
 * [{ path, type, required, description }].
 */
export function schemaTargets(schema) {
  const out = [];
  const root = schema || {};
  function resolve(node) {
    let n = node || {};
    for (let i = 0; i < 10 && n.$ref && typeof n.$ref === 'string'; i++) {
      const m = n.$ref.match(/^#\/(\$defs|definitions)\/(.+)$/);
      n = (m && root[m[1]] && root[m[1]][m[2]]) || {};
    }
    return n;
  }
  function walk(node, prefix, depth) {
    const n = resolve(node);
    const props = n.properties || {};
    const required = new Set(n.required || []);
    for (const [name, raw] of Object.entries(props)) {
      const prop = resolve(raw);
      const path = prefix ? `${prefix}.${name}` : name;
      const type = Array.isArray(prop.type) ? prop.type.filter((t) => t !== 'null').join('|') : prop.type;
      if ((type === 'object' || (!type && prop.properties)) && prop.properties && depth < 3) {
        walk(prop, path, depth + 1);
      } else {
        out.push({ path, type: type || 'any', required: required.has(name), description: prop.description || '' });
      }
    }
  }
  walk(root, '', 0);
  return out;
}
