// Visual field mapper: source fields (a tree of the sample) on the left, target fields on the
// right (from the destination's declared schema, a canonical retail schema, or typed in).
// Dragging a source onto a target, picking one in the target's list, or clicking a source
// then "Use" writes the JSONata object constructor; the constructor is read back on every
// change, so edits in the text show up here. Values the mapper cannot show as a plain field
// path stay editable as text.
import { useEffect, useId, useMemo, useState } from 'react';
import { useApi } from '../../useApi.js';
import { buildConstructor, isSimplePath, parseConstructor, splitTarget, targetKey } from './constructor.js';
import { editorApi } from './editorApi.js';
import { flattenTree, schemaTargets, sourceTree } from './fieldPaths.js';

const DRAG_TYPE = 'application/x-flowgate-field';
// `customer . email` is the path customer.email (spaces inside `back ticks` are kept).
const compact = (s) => String(s || '').replace(/\s*\.\s*/g, '.').trim();

function example(value) {
  if (value === undefined) return '';
  const text = typeof value === 'string' ? JSON.stringify(value) : String(value);
  return text.length > 28 ? `${text.slice(0, 27)}…` : text;
}

function SourceTree({ nodes, picked, onPick, level = 1 }) {
  return (
    <ul className={level === 1 ? 'fm-tree' : 'fm-subtree'} role={level === 1 ? 'list' : undefined}>
      {nodes.map((node) => (
        <li key={node.path}>
          <button
            type="button"
            className={`fm-source${picked === node.path ? ' is-picked' : ''}`}
            draggable
            aria-pressed={picked === node.path}
            aria-label={`Source field ${node.path}`}
            title={`${node.path} (${node.type}${node.itemType ? ` of ${node.itemType}` : ''})`}
            data-path={node.path}
            onClick={() => onPick(picked === node.path ? null : node.path)}
            onDragStart={(e) => {
              e.dataTransfer.setData(DRAG_TYPE, node.path);
              e.dataTransfer.setData('text/plain', node.path);
              e.dataTransfer.effectAllowed = 'copy';
            }}
          >
            <span className="fm-name">{node.name}</span>
            <span className="fm-type">{node.type === 'array' ? `[${node.itemType}]` : node.type}</span>
            {node.example !== undefined && <span className="fm-example">{example(node.example)}</span>}
          </button>
          {node.children.length > 0 && (
            <SourceTree nodes={node.children} picked={picked} onPick={onPick} level={level + 1} />
          )}
        </li>
      ))}
    </ul>
  );
}

function TargetRow({ target, pair, sources, picked, onSet }) {
  const [over, setOver] = useState(false);
  const [draft, setDraft] = useState(pair?.source ?? '');
  useEffect(() => setDraft(pair?.source ?? ''), [pair?.source]);
  const complex = pair && !pair.simple;
  const current = pair && pair.simple ? compact(pair.source) : '';
  const known = sources.some((s) => s.path === current);

  return (
    <li
      className={`fm-target${over ? ' is-over' : ''}${pair ? ' is-mapped' : ''}`}
      data-target={target.key}
      onDragOver={(e) => {
        e.preventDefault();
        e.dataTransfer.dropEffect = 'copy';
        setOver(true);
      }}
      onDragLeave={() => setOver(false)}
      onDrop={(e) => {
        e.preventDefault();
        setOver(false);
        const path = e.dataTransfer.getData(DRAG_TYPE) || e.dataTransfer.getData('text/plain');
        if (path) onSet(target.key, path);
      }}
    >
      <div className="fm-target-name">
        <code>
          {target.key.split('.').map((part, i) => (
            <span key={i}>
              {i > 0 && <wbr />}
              {i > 0 ? '.' : ''}
              {part}
            </span>
          ))}
        </code>
        {target.required && <span className="fm-required" title="Required by the schema">required</span>}
        {target.type && <span className="fm-type">{target.type}</span>}
      </div>
      <div className="fm-target-source">
        {complex ? (
          <input
            type="text"
            className="fm-expression"
            aria-label={`Expression for ${target.key}`}
            value={draft}
            onChange={(e) => setDraft(e.target.value)}
            onBlur={() => draft !== pair.source && onSet(target.key, draft)}
            onKeyDown={(e) => e.key === 'Enter' && onSet(target.key, draft)}
          />
        ) : (
          <select
            aria-label={`Source for ${target.key}`}
            value={current}
            onChange={(e) => onSet(target.key, e.target.value)}
          >
            <option value="">— not mapped —</option>
            {current && !known && <option value={current}>{current}</option>}
            {sources.map((s) => (
              <option key={s.path} value={s.path}>
                {s.path}
              </option>
            ))}
          </select>
        )}
        {picked && (
          <button
            type="button"
            className="button button-small"
            aria-label={`Use ${picked} for ${target.key}`}
            onClick={() => onSet(target.key, picked)}
          >
            Use
          </button>
        )}
        {pair && (
          <button
            type="button"
            className="button button-small button-ghost"
            aria-label={`Clear ${target.key}`}
            onClick={() => onSet(target.key, '')}
          >
            ×
          </button>
        )}
      </div>
    </li>
  );
}

export default function FieldMapper({ expression, onChange, sample, targetSchema = null }) {
  const ids = useId();
  const tree = useMemo(() => sourceTree(sample), [sample]);
  const sources = useMemo(() => flattenTree(tree), [tree]);
  const parsed = useMemo(() => parseConstructor(expression), [expression]);
  const [choice, setChoice] = useState(targetSchema ? 'destination' : '');
  const [typed, setTyped] = useState([]);
  const [newTarget, setNewTarget] = useState('');
  const [picked, setPicked] = useState(null);

  const list = useApi((signal) => editorApi.schemas({ signal }).catch(() => ({ items: [] })), []);
  const canonical = useApi(
    (signal) => (choice && choice !== 'destination' ? editorApi.schema(choice, { signal }) : Promise.resolve(null)),
    [choice],
  );
  const schema = choice === 'destination' ? targetSchema : canonical.data;

  const pairs = parsed?.pairs ?? [];
  const targets = useMemo(() => {
    const out = new Map();
    for (const t of schemaTargets(schema)) out.set(t.path, { key: t.path, type: t.type, required: t.required });
    for (const key of typed) if (!out.has(key)) out.set(key, { key, type: '', required: false });
    for (const p of pairs) {
      const key = targetKey(p.target);
      if (!out.has(key)) out.set(key, { key, type: '', required: false });
    }
    return [...out.values()];
  }, [schema, typed, pairs]);
  const byKey = useMemo(() => new Map(pairs.map((p) => [targetKey(p.target), p])), [pairs]);
  const mappedCount = targets.filter((t) => byKey.has(t.key)).length;

  function setSource(key, source) {
    if (!parsed) return;
    const next = pairs.slice();
    const index = next.findIndex((p) => targetKey(p.target) === key);
    const clean = String(source || '').trim();
    if (!clean) {
      if (index >= 0) next.splice(index, 1);
    } else if (index >= 0) {
      next[index] = { ...next[index], source: clean, simple: isSimplePath(clean) };
    } else {
      next.push({ target: splitTarget(key), source: clean, simple: isSimplePath(clean) });
    }
    setPicked(null);
    onChange(buildConstructor(next));
  }

  function addTarget(e) {
    e.preventDefault();
    const key = splitTarget(newTarget).join('.');
    if (key && !typed.includes(key)) setTyped([...typed, key]);
    setNewTarget('');
  }

  return (
    <section className="field-mapper card" aria-labelledby={`${ids}-title`}>
      <div className="fm-head">
        <h3 id={`${ids}-title`}>Field mapper</h3>
        <label className="field fm-schema">
          <span>Target fields</span>
          <select value={choice} onChange={(e) => setChoice(e.target.value)}>
            <option value="">Typed in / from the expression</option>
            {targetSchema && <option value="destination">Destination schema</option>}
            {(list.data?.items ?? []).map((s) => (
              <option key={s.name} value={s.name}>
                Canonical {s.title || s.name} (v{s.version})
              </option>
            ))}
          </select>
        </label>
        <span className="muted small" aria-live="polite">
          {parsed ? `${mappedCount} of ${targets.length} targets mapped` : ''}
        </span>
      </div>

      {!parsed ? (
        <p className="notice fm-notice" role="note">
          This expression is more than a plain object constructor, so the mapper cannot show it. Keep editing it as
          text, or clear it to start a new mapping here.
        </p>
      ) : (
        <div className="fm-columns">
          <div className="fm-column">
            <h4 className="fm-column-title">Source fields</h4>
            {tree.length ? (
              <SourceTree nodes={tree} picked={picked} onPick={setPicked} />
            ) : (
              <p className="muted small">Add a sample to see its fields.</p>
            )}
            <p className="muted small fm-hint">
              Drag a field onto a target, or click it and then “Use”.
            </p>
          </div>
          <div className="fm-column">
            <h4 className="fm-column-title">Target fields</h4>
            {canonical.error && <p className="text-error small">Could not load the schema: {canonical.error.message}</p>}
            {targets.length ? (
              <ul className="fm-targets" aria-label="Target fields">
                {targets.map((t) => (
                  <TargetRow
                    key={t.key}
                    target={t}
                    pair={byKey.get(t.key)}
                    sources={sources}
                    picked={picked}
                    onSet={setSource}
                  />
                ))}
              </ul>
            ) : (
              <p className="muted small">Pick a target schema or type a target field below.</p>
            )}
            <form className="fm-add" onSubmit={addTarget}>
              <label className="field">
                <span>New target field</span>
                <input
                  type="text"
                  value={newTarget}
                  placeholder="e.g. customer.email"
                  onChange={(e) => setNewTarget(e.target.value)}
                />
              </label>
              <button type="submit" className="button button-small" disabled={!newTarget.trim()}>
                Add target
              </button>
            </form>
          </div>
        </div>
      )}
    </section>
  );
}
