import { useEffect, useState } from 'react';
import { connections } from '../api.js';
import { useApi } from '../useApi.js';
import { ErrorNotice, Loading } from '../components/Notice.jsx';
import { CHECK_CONNECTORS, SQL_HINT, blankCheck, reconciliationChecksApi, toPayload } from './reconciliationChecksApi.js';
import './reconciliation.css';

function QueryField({ value, onChange, disabled }) {
  const [text, setText] = useState(JSON.stringify(value || {}));
  const [bad, setBad] = useState(false);
  return (
    <label className="field recon-wide">
      <span>Query parameters (JSON; <code>{'{day}'}</code> becomes the date)</span>
      <input
        value={text}
        disabled={disabled}
        aria-invalid={bad}
        onChange={(e) => {
          setText(e.target.value);
          try {
            const parsed = JSON.parse(e.target.value || '{}');
            setBad(false);
            onChange(parsed);
          } catch {
            setBad(true);
          }
        }}
      />
    </label>
  );
}

function CheckEditor({ check, index, options, readOnly, onChange, onRemove }) {
  const set = (field) => (e) => onChange({ ...check, [field]: e.target.type === 'checkbox' ? e.target.checked : e.target.value });
  const usable = options.filter((c) => CHECK_CONNECTORS[check.kind].includes(c.connector));
  function setKind(kind) {
    const fresh = blankCheck(kind);
    onChange({ ...check, kind, connection_id: '', sql: fresh.sql, ids_expression: check.ids_expression || fresh.ids_expression });
  }
  const label = check.name || `Check ${index + 1}`;
  return (
    <fieldset className="card recon-check" aria-label={label} disabled={readOnly}>
      <legend>{label}</legend>
      <div className="recon-row">
        <label className="field">
          <span>Name</span>
          <input value={check.name} onChange={set('name')} required maxLength={200} />
        </label>
        <label className="field">
          <span>Side</span>
          <select value={check.side} onChange={set('side')}>
            <option value="destination">destination (what we delivered)</option>
            <option value="source">source (what we received)</option>
          </select>
        </label>
        <div className="field" role="radiogroup" aria-label="Kind">
          <span>Kind</span>
          <div className="recon-kinds">
            {['http', 'sql'].map((kind) => (
              <label key={kind}>
                <input type="radio" name={`kind-${index}`} value={kind} checked={check.kind === kind} onChange={() => setKind(kind)} />
                {kind === 'http' ? 'HTTP' : 'SQL'}
              </label>
            ))}
          </div>
        </div>
        <label className="field">
          <span>Connection</span>
          <select value={String(check.connection_id ?? '')} onChange={set('connection_id')} required>
            <option value="">Choose a {check.kind === 'sql' ? 'SQL' : 'HTTP'} connection</option>
            {usable.map((c) => <option key={c.id} value={String(c.id)}>{c.name} ({c.connector})</option>)}
          </select>
        </label>
      </div>
      {check.kind === 'sql' ? (
        <label className="field recon-wide">
          <span>SQL query</span>
          <textarea className="recon-sql" rows={4} spellCheck={false} value={check.sql ?? ''} onChange={set('sql')} required />
          <small className="muted">{SQL_HINT}</small>
        </label>
      ) : (
        <div className="recon-row">
          <label className="field">
            <span>Path (<code>{'{day}'}</code> becomes the date)</span>
            <input value={check.path ?? '/'} onChange={set('path')} />
          </label>
          <QueryField value={check.query} disabled={readOnly} onChange={(query) => onChange({ ...check, query })} />
        </div>
      )}
      <div className="recon-row">
        <label className="field">
          <span>Mode</span>
          <select value={check.mode} onChange={set('mode')}>
            <option value="ids">ids (lists missing ids)</option>
            <option value="count">count only (no ids)</option>
          </select>
        </label>
        <label className="field recon-grow">
          <span>{check.mode === 'count' ? 'Count expression (JSONata, one number)' : 'Ids expression (JSONata)'}</span>
          <input className="recon-code" value={check.ids_expression} onChange={set('ids_expression')} required />
        </label>
        <label className="field recon-narrow">
          <span>Tolerance</span>
          <input type="number" min={0} value={check.tolerance} onChange={set('tolerance')} />
        </label>
        {check.side === 'destination' && (
          <label className="field">
            <span>Deliver step (optional)</span>
            <input value={check.step_id ?? ''} onChange={set('step_id')} placeholder="found from the connection" />
          </label>
        )}
        <label className="recon-enabled">
          <input type="checkbox" checked={check.enabled} onChange={set('enabled')} /> enabled
        </label>
      </div>
      {!readOnly && (
        <button type="button" className="button button-small recon-remove" onClick={onRemove}>Remove {label}</button>
      )}
    </fieldset>
  );
}

/** The flow's external checks: ask a system (HTTP or SQL) for its ids or count of the day. */
export default function ReconciliationChecks({ flowId, canEdit }) {
  const saved = useApi((signal) => reconciliationChecksApi.list(flowId, { signal }), [flowId]);
  const conns = useApi((signal) => connections.list({ signal }), []);
  const [checks, setChecks] = useState(null);
  const [state, setState] = useState({ busy: false, error: null, done: false });
  useEffect(() => {
    if (saved.data) setChecks(saved.data.checks);
  }, [saved.data]);
  if (saved.error || conns.error) return <ErrorNotice error={saved.error || conns.error} />;
  if (!checks) return <Loading>Loading checks…</Loading>;
  const options = conns.data?.items ?? [];
  async function save(e) {
    e.preventDefault();
    setState({ busy: true, error: null, done: false });
    try {
      const answer = await reconciliationChecksApi.save(flowId, checks.map(toPayload));
      setChecks(answer.checks);
      setState({ busy: false, error: null, done: true });
    } catch (error) {
      setState({ busy: false, error, done: false });
    }
  }
  const replace = (i) => (next) => setChecks(checks.map((c, j) => (j === i ? next : c)));
  return (
    <section className="recon-checks" aria-label="External checks">
      <h2>External checks</h2>
      <p className="muted small">
        Each check asks a system for its own ids (or count) of the day and compares them with ours.
        Missing ids at a destination can be re-sent from a report.
      </p>
      <form onSubmit={save}>
        {checks.length === 0 && <p className="empty card">No external check yet.</p>}
        {checks.map((check, i) => (
          <CheckEditor
            // Checks have no id until saved: position is their identity while editing.
            key={check.id ?? `new-${i}`}
            check={check}
            index={i}
            options={options}
            readOnly={!canEdit}
            onChange={replace(i)}
            onRemove={() => setChecks(checks.filter((_, j) => j !== i))}
          />
        ))}
        {canEdit && (
          <div className="filter-buttons">
            <button type="button" className="button" onClick={() => setChecks([...checks, blankCheck('sql')])}>Add SQL check</button>
            <button type="button" className="button" onClick={() => setChecks([...checks, blankCheck('http')])}>Add HTTP check</button>
            <button type="submit" className="button button-primary" disabled={state.busy}>Save checks</button>
          </div>
        )}
        {state.done && <p role="status">Checks saved.</p>}
        <ErrorNotice error={state.error} lead="Not saved." />
      </form>
    </section>
  );
}
