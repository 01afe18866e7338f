// Pure helpers over the flow definition (the document saved as the draft).
// The step kinds come from the flow JSON Schema served by GET /api/v1/schemas/flow and the
// destinations/triggers from GET /api/v1/connectors: nothing here is a copy of either.

export const TRIGGER_ID = 'trigger';

export const STEP_HELP = {
  map: 'Reshape the message with a JSONata expression.',
  filter: 'Let a message through only when a condition is true.',
  route: 'Send the message down the branch of the first matching case (or of every match in mode “all”); “otherwise” when none matches.',
  split: 'Turn an array into one message per item; each item runs the next steps on its own.',
  deliver: 'Send the message to a system.',
};

export const STEP_LABEL = { map: 'Map', filter: 'Filter', route: 'Route', split: 'Split', deliver: 'Destination' };

export function emptyDefinition() {
  return { schema_version: 1, steps: [], edges: [], layout: {}, samples: [] };
}

/** Step types the engine accepts, read from the flow schema ($defs.step.properties.type.enum). */
export function stepTypes(flowSchema) {
  const types = flowSchema?.$defs?.step?.properties?.type?.enum;
  return Array.isArray(types) ? types : [];
}

/** The JSON Schema of one optional part of a step, e.g. 'retry', from the flow schema. */
export function stepPartSchema(flowSchema, part) {
  return flowSchema?.$defs?.[part] ?? null;
}

export function defaultsOf(schema) {
  const out = {};
  for (const [key, prop] of Object.entries(schema?.properties ?? {})) {
    if ((schema.required ?? []).includes(key) && prop.default !== undefined) out[key] = prop.default;
  }
  return out;
}

export function nodeIds(doc) {
  return [...(doc.trigger ? [TRIGGER_ID] : []), ...doc.steps.map((s) => s.id)];
}

export function newStepId(doc, base) {
  const taken = new Set(nodeIds(doc));
  const stem = base.toLowerCase().replace(/[^a-z0-9_]+/g, '_').replace(/^[^a-z]+/, '') || 'step';
  for (let n = 1; ; n++) {
    const id = `${stem}_${n}`.slice(0, 63);
    if (!taken.has(id)) return id;
  }
}

/** A new step (or trigger) for a palette item {kind: 'trigger'|'step', type, connector}. */
export function addNode(doc, item, position, connectors) {
  const layout = { ...(doc.layout ?? {}) };
  if (item.kind === 'trigger') {
    const spec = connectors.find((c) => c.key === item.connector);
    layout[TRIGGER_ID] = position;
    return { id: TRIGGER_ID, doc: { ...doc, trigger: { type: item.connector, config: defaultsOf(spec?.step_schema) }, layout } };
  }
  let step;
  if (item.type === 'deliver') {
    const spec = connectors.find((c) => c.key === item.connector);
    const id = newStepId(doc, `send_${item.connector}`);
    step = { id, type: 'deliver', connector: item.connector, config: defaultsOf(spec?.step_schema) };
  } else {
    const id = newStepId(doc, item.type);
    step = { id, type: item.type };
    if (item.type === 'map') step.expression = '$';
    if (item.type === 'filter') step.condition = 'true';
    if (item.type === 'route') {
      step.mode = 'first';
      step.cases = [{ name: 'case_1', condition: 'true' }];
    }
    if (item.type === 'split') step.expression = 'line_items';
  }
  layout[step.id] = position;
  return { id: step.id, doc: { ...doc, steps: [...doc.steps, step], layout } };
}

export function removeNodes(doc, ids) {
  const gone = new Set(ids);
  const layout = { ...(doc.layout ?? {}) };
  for (const id of gone) delete layout[id];
  const next = {
    ...doc,
    steps: doc.steps.filter((s) => !gone.has(s.id)),
    edges: doc.edges.filter((e) => !gone.has(e.from) && !gone.has(e.to)),
    layout,
  };
  if (gone.has(TRIGGER_ID)) delete next.trigger;
  // Sample tests of removed map steps would only produce problems.
  if (Array.isArray(doc.tests)) next.tests = doc.tests.filter((t) => !gone.has(t.step));
  return next;
}

export const OTHERWISE = 'otherwise';

/** The branch names of a route step: its case names, then 'otherwise' when enabled. */
export function routeBranches(step) {
  if (step?.type !== 'route') return [];
  const names = (step.cases ?? []).map((c) => c.name).filter((n) => n);
  return step.otherwise ? [...names, OTHERWISE] : names;
}

/** Branches of route `from` that have no edge yet. */
export function freeBranches(doc, from) {
  const step = doc.steps.find((s) => s.id === from);
  const used = new Set(doc.edges.filter((e) => e.from === from).map((e) => e.case));
  return routeBranches(step).filter((b) => !used.has(b));
}

/** Join two nodes; out of a route the edge names a case (`kase`, else the first free one). */
export function connect(doc, from, to, kase) {
  if (!from || !to || from === to || to === TRIGGER_ID) return doc;
  const source = doc.steps.find((s) => s.id === from);
  if (source?.type === 'route') {
    const branch = kase || freeBranches(doc, from)[0];
    if (!branch || !routeBranches(source).includes(branch)) return doc;
    // A case has one branch: connecting it again moves it.
    const others = doc.edges.filter((e) => !(e.from === from && e.case === branch));
    if (others.some((e) => e.from === from && e.to === to && e.case === branch)) return doc;
    return { ...doc, edges: [...others, { from, to, case: branch }] };
  }
  if (doc.edges.some((e) => e.from === from && e.to === to)) return doc;
  return { ...doc, edges: [...doc.edges, { from, to }] };
}

export function disconnect(doc, from, to) {
  return { ...doc, edges: doc.edges.filter((e) => !(e.from === from && e.to === to)) };
}

export function updateStep(doc, id, patch) {
  if (id === TRIGGER_ID) return { ...doc, trigger: { ...doc.trigger, ...patch } };
  const old = doc.steps.find((s) => s.id === id);
  const next = { ...doc, steps: doc.steps.map((s) => (s.id === id ? { ...s, ...patch } : s)) };
  if (old?.type === 'route' && ('cases' in patch || 'otherwise' in patch)) {
    return { ...next, edges: relabelRouteEdges(doc.edges, id, old, { ...old, ...patch }) };
  }
  return next;
}

/** Keep a route's edges in step with its cases: a renamed case keeps its branch, a removed
 * case (or a disabled otherwise) loses it. */
function relabelRouteEdges(edges, id, before, after) {
  const oldNames = (before.cases ?? []).map((c) => c.name);
  const newNames = (after.cases ?? []).map((c) => c.name);
  const renamed = {};
  if (oldNames.length === newNames.length) {
    const changed = oldNames.map((n, i) => [n, newNames[i]]).filter(([a, b]) => a !== b);
    const sameSet = changed.every(([a]) => newNames.includes(a));
    if (changed.length === 1 && !sameSet) renamed[changed[0][0]] = changed[0][1];
  }
  const valid = new Set([...newNames, ...(after.otherwise ? [OTHERWISE] : [])]);
  return edges
    .map((e) => (e.from === id && e.case in renamed ? { ...e, case: renamed[e.case] } : e))
    .filter((e) => e.from !== id || valid.has(e.case));
}

export function moveNodes(doc, positions) {
  const same = Object.entries(positions).every(([id, p]) => {
    const old = doc.layout?.[id];
    return old && old.x === p.x && old.y === p.y;
  });
  if (same) return doc;
  return { ...doc, layout: { ...(doc.layout ?? {}), ...positions } };
}

export function nodeOf(doc, id) {
  if (id === TRIGGER_ID) return doc.trigger ? { id: TRIGGER_ID, type: 'trigger', ...doc.trigger, triggerType: doc.trigger.type } : null;
  return doc.steps.find((s) => s.id === id) ?? null;
}

/** Where to put a node that has no saved position: by depth from the trigger. */
export function fallbackPosition(doc, id, index) {
  const depth = new Map([[TRIGGER_ID, 0]]);
  for (let pass = 0; pass < doc.steps.length + 1; pass++) {
    for (const e of doc.edges) {
      if (depth.has(e.from) && !depth.has(e.to)) depth.set(e.to, depth.get(e.from) + 1);
    }
  }
  const d = depth.get(id) ?? index;
  return { x: 60 + d * 260, y: 80 + (depth.has(id) ? 0 : 140) + (index % 3) * 10 };
}

/** Problems grouped by the node (step id or 'trigger') and edge index they belong to. */
export function groupProblems(problems) {
  const byNode = {};
  const byEdge = {};
  const general = [];
  for (const p of problems ?? []) {
    if (p.step) (byNode[p.step] ??= []).push(p);
    else if (p.edge !== undefined && p.edge !== null) (byEdge[p.edge] ??= []).push(p);
    else general.push(p);
  }
  return { byNode, byEdge, general };
}

/** The path of ids from the trigger to `id` (parents first), following the first parent. */
export function pathTo(doc, id) {
  const parent = new Map();
  for (const e of doc.edges) if (!parent.has(e.to)) parent.set(e.to, e.from);
  const path = [];
  let cur = id;
  const seen = new Set();
  while (cur && !seen.has(cur)) {
    seen.add(cur);
    path.unshift(cur);
    cur = parent.get(cur);
  }
  return path;
}

/** Human text for a problem: "Map map_1: expression — T2001: …". */
export function problemText(p) {
  return p.message;
}
