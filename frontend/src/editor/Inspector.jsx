import { useId, useState } from 'react';
import { api } from '../api.js';
import SchemaForm from './SchemaForm.jsx';
import { OTHERWISE, STEP_HELP, STEP_LABEL, TRIGGER_ID, freeBranches, nodeIds, routeBranches, stepPartSchema } from './model.js';
import { MappingEditor } from './parts.jsx';

/** Server problems of a node, keyed by the path inside `prefix` ("/steps/3/config"). */
function fieldProblems(problems, prefix) {
  const out = {};
  for (const p of problems) {
    if (p.path.startsWith(`${prefix}/`)) {
      const key = p.path.slice(prefix.length + 1);
      (out[key] ??= []).push(p.message);
    }
  }
  return out;
}

function NewConnection({ spec, onCreated, onCancel, notify }) {
  const [name, setName] = useState(`${spec.name} connection`);
  const [config, setConfig] = useState({});
  const [secrets, setSecrets] = useState({});
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const nameId = useId();
  async function create(event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    const secretValues = Object.fromEntries(Object.entries(secrets).filter(([, v]) => v));
    try {
      const created = await api('/api/v1/connections', {
        method: 'POST',
        body: { name, connector: spec.key, config, secrets: secretValues },
      });
      notify({ kind: 'success', text: `Connection “${created.name}” created.` });
      onCreated(created);
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  }
  return (
    <form className="inspector-subform" onSubmit={create} aria-label="New connection">
      <h4>New {spec.name} connection</h4>
      <div className="sf-field">
        <label htmlFor={nameId}>Connection name<span className="sf-required" aria-hidden="true"> *</span></label>
        <input id={nameId} value={name} required onChange={(e) => setName(e.target.value)} />
      </div>
      <SchemaForm
        label="Connection settings"
        schema={spec.connection_schema}
        value={config}
        onChange={setConfig}
        secretFields={spec.secret_fields}
        storedSecrets={{}}
        secrets={secrets}
        onSecretsChange={setSecrets}
      />
      {error && (
        <div className="notice notice-error" role="alert">
          {error.message}
          {Array.isArray(error.body?.problems) && (
            <ul>{error.body.problems.map((p) => <li key={p.path + p.message}>{p.path}: {p.message}</li>)}</ul>
          )}
        </div>
      )}
      <div className="inspector-actions">
        <button type="submit" className="button button-primary" disabled={busy}>{busy ? 'Creating…' : 'Create connection'}</button>
        <button type="button" className="button button-ghost" onClick={onCancel}>Cancel</button>
      </div>
    </form>
  );
}

function ConnectionPicker({ spec, value, connections, onChange, onConnectionsChanged, problems, notify, optional }) {
  const id = useId();
  const [creating, setCreating] = useState(false);
  const [test, setTest] = useState(null);
  const mine = connections.filter((c) => c.connector === spec.key);
  const chosen = mine.find((c) => c.id === value);
  async function runTest() {
    setTest({ busy: true });
    try {
      const result = await api(`/api/v1/connections/${value}/test`, { method: 'POST' });
      setTest(result);
    } catch (err) {
      setTest({ ok: false, message: err.message });
    }
  }
  return (
    <div className="sf-field">
      <label htmlFor={id}>
        Connection{!optional && <span className="sf-required" aria-hidden="true"> *</span>}
      </label>
      <select
        id={id}
        value={value ?? ''}
        onChange={(e) => {
          setTest(null);
          if (e.target.value === '__new__') setCreating(true);
          else onChange(e.target.value === '' ? undefined : Number(e.target.value));
        }}
      >
        <option value="">{optional ? 'None' : '— choose a connection —'}</option>
        {mine.map((c) => <option key={c.id} value={c.id}>{c.name}</option>)}
        <option value="__new__">New connection…</option>
      </select>
      {chosen?.config?.base_url && <p className="sf-help">Sends to {chosen.config.base_url}</p>}
      {chosen && (spec.secret_fields ?? []).some((f) => chosen[`has_${f}`]) && (
        <p className="sf-help">
          Secrets:{' '}
          {(spec.secret_fields ?? []).filter((f) => chosen[`has_${f}`]).map((f) => (
            <span key={f} className="sf-secret is-stored">{f.replace(/_/g, ' ')} stored</span>
          ))}
        </p>
      )}
      {(problems ?? []).map((m) => <p key={m} className="sf-error" role="status">{m}</p>)}
      {value && (
        <div className="inspector-inline">
          <button type="button" className="button button-small" onClick={runTest} disabled={test?.busy}>
            {test?.busy ? 'Testing…' : 'Test connection'}
          </button>
          {test && !test.busy && (
            <span className={test.ok ? 'test-ok' : 'test-fail'} role="status">
              {test.ok ? '✓ ' : '✗ '}{test.message || (test.ok ? 'Connection works' : 'Connection failed')}
            </span>
          )}
        </div>
      )}
      {creating && (
        <NewConnection
          spec={spec}
          notify={notify}
          onCancel={() => setCreating(false)}
          onCreated={(created) => {
            setCreating(false);
            onConnectionsChanged();
            onChange(created.id);
          }}
        />
      )}
    </div>
  );
}

function ConnectTo({ doc, node, onConnect, onDisconnect, titleOf }) {
  const id = useId();
  const caseId = useId();
  const [target, setTarget] = useState('');
  const [branch, setBranch] = useState('');
  const isRoute = node.type === 'route';
  const outEdges = doc.edges.filter((e) => e.from === node.id);
  const outgoing = outEdges.map((e) => e.to);
  const incoming = doc.edges.filter((e) => e.to === node.id).map((e) => e.from);
  const candidates = nodeIds(doc).filter((n) => n !== node.id && n !== TRIGGER_ID && (isRoute || !outgoing.includes(n)));
  const branches = isRoute ? routeBranches(node) : [];
  const free = isRoute ? freeBranches(doc, node.id) : [];
  const chosenBranch = branches.includes(branch) ? branch : free[0] ?? branches[0] ?? '';
  return (
    <section className="inspector-section" aria-label="Links to other steps">
      <h4>Links</h4>
      {incoming.length > 0 && (
        <p className="sf-help">Receives from: {incoming.map(titleOf).join(', ')}</p>
      )}
      {outgoing.length > 0 && (
        <ul className="link-list">
          {outEdges.map(({ to, case: kase }) => (
            <li key={`${kase ?? ''}->${to}`}>
              {kase && <span className="muted">{kase} </span>}→ {titleOf(to)}{' '}
              <button type="button" className="button button-small button-ghost"
                aria-label={`Disconnect ${titleOf(node.id)} from ${titleOf(to)}`}
                onClick={() => onDisconnect(node.id, to)}>Disconnect</button>
            </li>
          ))}
        </ul>
      )}
      {isRoute && branches.length > 0 && (
        <div className="inspector-inline">
          <label htmlFor={caseId}>Branch</label>
          <select id={caseId} value={chosenBranch} onChange={(e) => setBranch(e.target.value)}>
            {branches.map((b) => (
              <option key={b} value={b}>{b}{free.includes(b) ? '' : ' (connected: moves it)'}</option>
            ))}
          </select>
        </div>
      )}
      {node.type !== 'deliver' && (
        <div className="inspector-inline">
          <label htmlFor={id}>Connect to…</label>
          <select id={id} value={target} onChange={(e) => setTarget(e.target.value)}>
            <option value="">— choose a step —</option>
            {candidates.map((c) => <option key={c} value={c}>{titleOf(c)}</option>)}
          </select>
          <button type="button" className="button button-small" disabled={!target}
            onClick={() => { onConnect(node.id, target, isRoute ? chosenBranch : undefined); setTarget(''); setBranch(''); }}>Connect</button>
        </div>
      )}
    </section>
  );
}

/** Route: ordered cases (name + condition), first/all mode, and the otherwise branch. */
function RouteForm({ node, problems, sample, titleOf, onChange }) {
  const modeId = useId();
  const otherwiseId = useId();
  const cases = node.cases ?? [];
  const title = titleOf(node.id);
  const setCases = (next, key) => onChange({ cases: next }, key);
  const patchCase = (i, patch, key) => setCases(cases.map((c, j) => (j === i ? { ...c, ...patch } : c)), key);
  const move = (i, by) => {
    const next = [...cases];
    [next[i], next[i + by]] = [next[i + by], next[i]];
    setCases(next);
  };
  function addCase() {
    const taken = new Set(cases.map((c) => c.name));
    let n = cases.length + 1;
    while (taken.has(`case_${n}`)) n++;
    setCases([...cases, { name: `case_${n}`, condition: 'true' }]);
  }
  return (
    <section className="inspector-section" aria-label={`Cases of ${title}`}>
      <div className="sf-field">
        <label htmlFor={modeId}>Follow</label>
        <select id={modeId} value={node.mode ?? 'first'} onChange={(e) => onChange({ mode: e.target.value })}>
          <option value="first">The first matching case</option>
          <option value="all">Every matching case</option>
        </select>
      </div>
      <h4>Cases</h4>
      <ol className="route-cases">
        {cases.map((c, i) => (
          <RouteCase key={i} index={i} kase={c} count={cases.length} node={node} sample={sample}
            problems={problems} title={title}
            onPatch={(patch, key) => patchCase(i, patch, key)}
            onMove={(by) => move(i, by)}
            onRemove={() => setCases(cases.filter((_, j) => j !== i))} />
        ))}
      </ol>
      {problems.cases && <p className="sf-error" role="status">{problems.cases.join(' ')}</p>}
      <button type="button" className="button button-small" onClick={addCase}>Add case</button>
      <div className="sf-field sf-checkbox">
        <label htmlFor={otherwiseId}>
          <input id={otherwiseId} type="checkbox" checked={!!node.otherwise}
            onChange={(e) => onChange({ otherwise: e.target.checked || undefined })} />
          {' '}Otherwise branch (when no case matches)
        </label>
        <p className="sf-help">Without it, a message no case matches ends here as “filtered”.</p>
      </div>
    </section>
  );
}

function RouteCase({ index, kase, count, node, sample, problems, title, onPatch, onMove, onRemove }) {
  const nameId = useId();
  const label = kase.name || `case ${index + 1}`;
  const errors = [...(problems[`cases/${index}/name`] ?? []), ...(problems[`cases/${index}/condition`] ?? []), ...(problems[`cases/${index}`] ?? [])];
  return (
    <li className="route-case">
      <div className="route-case-head">
        <div className="sf-field">
          <label htmlFor={nameId}>Case {index + 1} name</label>
          <input id={nameId} value={kase.name} maxLength={64}
            onChange={(e) => onPatch({ name: e.target.value }, `case-name:${node.id}:${index}`)} />
        </div>
        <button type="button" className="button button-small button-ghost" disabled={index === 0}
          aria-label={`Move case ${label} up`} onClick={() => onMove(-1)}>↑</button>
        <button type="button" className="button button-small button-ghost" disabled={index === count - 1}
          aria-label={`Move case ${label} down`} onClick={() => onMove(1)}>↓</button>
        <button type="button" className="button button-small button-ghost" disabled={count === 1}
          aria-label={`Remove case ${label}`} onClick={onRemove}>Remove</button>
      </div>
      {kase.name === OTHERWISE && <p className="sf-error" role="status">“otherwise” is reserved for the fallback branch.</p>}
      <MappingEditor
        key={`${node.id}:${index}`}
        mode="condition"
        label={`Condition of case ${label}`}
        value={kase.condition ?? ''}
        onChange={(expr) => onPatch({ condition: expr }, `case-cond:${node.id}:${index}`)}
        sample={sample}
        targetSchema={null}
      />
      {errors.length > 0 && <p className="sf-error" role="status">{errors.join(' ')}</p>}
    </li>
  );
}

/** Split: the JSONata giving the array, and the most items one message may split into. */
function SplitForm({ node, problems, sample, titleOf, onChange }) {
  const maxId = useId();
  const title = titleOf(node.id);
  return (
    <section className="inspector-section" aria-label={`Items of ${title}`}>
      <MappingEditor
        key={node.id}
        mode="map"
        label={`Items of ${title}`}
        value={node.expression ?? ''}
        onChange={(expr) => onChange({ expression: expr }, `expr:${node.id}`)}
        sample={sample}
        targetSchema={null}
      />
      {problems.expression && <p className="sf-error" role="status">{problems.expression.join(' ')}</p>}
      <p className="sf-help">Each item becomes its own message for the next steps; deliveries are keyed per item, so a retry never sends one twice. No items: the message ends here as “filtered”.</p>
      <div className="sf-field">
        <label htmlFor={maxId}>Most items</label>
        <input id={maxId} type="number" min={1} max={10000} placeholder="1000"
          value={node.max_items ?? ''}
          onChange={(e) => onChange({ max_items: e.target.value === '' ? undefined : Number(e.target.value) }, `max:${node.id}`)} />
        <p className="sf-help">More items than this fail the run with a clear error (default 1000).</p>
        {problems.max_items && <p className="sf-error" role="status">{problems.max_items.join(' ')}</p>}
      </div>
    </section>
  );
}

/**
 * The form of the selected node. props: doc, node, index (step index), connectors,
 * connections, flowSchema, canonicalSchemas, problems (this node's), sample (its input),
 * onChange(patch, coalesceKey), onConnect, onDisconnect, onDelete, onConnectionsChanged,
 * notify, titleOf, targetSchema.
 */
export default function Inspector(props) {
  const { doc, node, index, connectors, connections, flowSchema, canonicalSchemas, problems, sample,
    onChange, onConnect, onDisconnect, onDelete, onConnectionsChanged, notify, titleOf, targetSchema } = props;
  const nameId = useId();
  const typeId = useId();
  const schemaId = useId();
  if (!node) {
    return (
      <div className="inspector-empty">
        <h2>Inspector</h2>
        <p>Select a node on the canvas to edit it.</p>
        <p className="muted">Tip: Tab to a node and press Enter to select it; arrow keys move it, Delete removes it.</p>
      </div>
    );
  }
  const isTrigger = node.id === TRIGGER_ID;
  const prefix = isTrigger ? '/trigger' : `/steps/${index}`;
  const kind = isTrigger ? 'trigger' : node.type;
  const spec = isTrigger ? connectors.find((c) => c.key === node.triggerType)
    : node.type === 'deliver' ? connectors.find((c) => c.key === node.connector) : null;
  const ownProblems = fieldProblems(problems, prefix);
  const general = problems.filter((p) => p.path === prefix || !p.path.startsWith(`${prefix}/`) || ['/id', '/type'].includes(p.path.slice(prefix.length)));
  const retrySchema = stepPartSchema(flowSchema, 'retry');

  return (
    <div className="inspector" aria-label={`Inspector: ${titleOf(node.id)}`} role="region">
      <div className="inspector-head">
        <span className={`inspector-kind kind-${kind}`}>{isTrigger ? 'Trigger' : STEP_LABEL[kind] ?? kind}</span>
        <h2>{titleOf(node.id)}</h2>
        <p className="muted small">id <code>{node.id}</code>{spec && <> · {spec.name}</>}</p>
        {!isTrigger && <p className="sf-help">{STEP_HELP[kind]}</p>}
      </div>

      {general.length > 0 && (
        <ul className="inspector-problems" aria-label="Problems of this node">
          {general.map((p) => <li key={p.path + p.code + p.message}>{p.message}</li>)}
        </ul>
      )}

      {!isTrigger && (
        <div className="sf-field">
          <label htmlFor={nameId}>Name</label>
          <input id={nameId} value={node.name ?? ''} placeholder={node.id} maxLength={200}
            onChange={(e) => onChange({ name: e.target.value || undefined }, `name:${node.id}`)} />
        </div>
      )}

      {isTrigger && (
        <div className="sf-field">
          <label htmlFor={typeId}>Trigger type</label>
          <select id={typeId} value={node.triggerType}
            onChange={(e) => onChange({ type: e.target.value, config: {}, connection_id: undefined })}>
            {connectors.filter((c) => c.kind === 'trigger').map((c) => <option key={c.key} value={c.key}>{c.name}</option>)}
          </select>
          {spec && <p className="sf-help">{spec.description}</p>}
        </div>
      )}

      {kind === 'map' && (
        <MappingEditor
          key={node.id}
          mode="map"
          label={`Mapping of ${titleOf(node.id)}`}
          value={node.expression ?? ''}
          onChange={(expr) => onChange({ expression: expr }, `expr:${node.id}`)}
          sample={sample}
          targetSchema={targetSchema}
        />
      )}
      {kind === 'filter' && (
        <MappingEditor
          key={node.id}
          mode="condition"
          label={`Condition of ${titleOf(node.id)}`}
          value={node.condition ?? ''}
          onChange={(expr) => onChange({ condition: expr }, `cond:${node.id}`)}
          sample={sample}
          targetSchema={null}
        />
      )}
      {kind === 'route' && (
        <RouteForm node={node} problems={ownProblems} sample={sample} titleOf={titleOf}
          onChange={onChange} />
      )}
      {kind === 'split' && (
        <SplitForm node={node} problems={ownProblems} sample={sample} titleOf={titleOf}
          onChange={onChange} />
      )}
      {(kind === 'map' || kind === 'filter') && (ownProblems.expression || ownProblems.condition) && (
        <p className="sf-error" role="status">{(ownProblems.expression || ownProblems.condition).join(' ')}</p>
      )}

      {spec && (
        <section className="inspector-section">
          <h4>{isTrigger ? 'Trigger settings' : 'Destination settings'}</h4>
          {(spec.requires_connection || (spec.secret_fields?.length ?? 0) > 0) && (
            <ConnectionPicker
              spec={spec}
              optional={!spec.requires_connection}
              value={node.connection_id}
              connections={connections}
              problems={ownProblems.connection_id}
              notify={notify}
              onConnectionsChanged={onConnectionsChanged}
              onChange={(v) => onChange({ connection_id: v })}
            />
          )}
          <SchemaForm
            key={`${node.id}:${spec.key}`}
            label={`${spec.name} settings`}
            schema={spec.step_schema}
            value={node.config ?? {}}
            problems={fieldProblems(problems, `${prefix}/config`)}
            onChange={(config) => onChange({ config }, `config:${node.id}`)}
          />
          {!isTrigger && spec.idempotency && (
            <p className="sf-help">Idempotency: <strong>{spec.idempotency}</strong> — what keeps a retried delivery from arriving twice.</p>
          )}
        </section>
      )}

      {kind === 'deliver' && retrySchema && (
        <details className="inspector-section">
          <summary>Retries</summary>
          <SchemaForm
            key={`${node.id}:retry`}
            label="Retry policy"
            schema={retrySchema}
            value={node.retry ?? {}}
            problems={fieldProblems(problems, `${prefix}/retry`)}
            onChange={(retry) => onChange({ retry: Object.keys(retry).length ? retry : undefined }, `retry:${node.id}`)}
          />
        </details>
      )}

      {kind === 'deliver' && canonicalSchemas.length > 0 && (
        <div className="sf-field">
          <label htmlFor={schemaId}>Input must match</label>
          <select id={schemaId}
            value={node.input_schema ? `${node.input_schema.name}@${node.input_schema.version}` : ''}
            onChange={(e) => {
              const [name, version] = e.target.value.split('@');
              onChange({ input_schema: name ? { name, version: Number(version) } : undefined });
            }}>
            <option value="">Any message</option>
            {canonicalSchemas.map((s) => (
              <option key={`${s.name}@${s.version}`} value={`${s.name}@${s.version}`}>{s.title || s.name} v{s.version}</option>
            ))}
          </select>
          <p className="sf-help">A canonical schema checked before anything is sent; the mapper uses it as the target.</p>
        </div>
      )}

      <ConnectTo doc={doc} node={node} onConnect={onConnect} onDisconnect={onDisconnect} titleOf={titleOf} />

      <div className="inspector-actions">
        <button type="button" className="button button-danger" onClick={() => onDelete(node.id)}>
          Delete {isTrigger ? 'trigger' : 'step'}
        </button>
      </div>
    </div>
  );
}
