// Pieces of the review page: semantic diff, contract (with its diff), guardrails, tests, dry run.
import { Fragment } from 'react';

function show(value) {
  if (value === undefined || value === null || value === '') return '—';
  return typeof value === 'string' ? value : JSON.stringify(value);
}

export function TextDiff({ text, label }) {
  if (!text) return null;
  return (
    <pre className="gov-diff" aria-label={label}>
      {text.split('\n').map((line, i) => {
        const kind = line.startsWith('@@') ? 'hunk'
          : line.startsWith('+') && !line.startsWith('+++') ? 'add'
            : line.startsWith('-') && !line.startsWith('---') ? 'del' : '';
        return <span key={i} className={kind || undefined}>{line}{'\n'}</span>;
      })}
    </pre>
  );
}

function Change({ change }) {
  return (
    <li>
      <code>{change.field}</code>
      {change.diff ? (
        <TextDiff text={change.diff} label={`Changes to ${change.field}`} />
      ) : (
        <>: <del>{show(change.old)}</del> → <ins>{show(change.new)}</ins></>
      )}
    </li>
  );
}

export function SemanticDiff({ diff, against }) {
  if (!diff) return null;
  const { trigger, steps, edges, tests } = diff;
  return (
    <div>
      <p className="gov-muted">
        {against ? `Compared with live version ${against}.` : 'No live version: everything is new.'} Layout
        moves are not changes and are not shown.
      </p>
      {diff.unchanged && <p role="status">No behaviour change against the live version.</p>}
      {trigger?.changed && (
        <>
          <h3>Trigger</h3>
          <ul>{trigger.changes.map((c) => <Change key={c.field} change={c} />)}</ul>
        </>
      )}
      {steps?.added?.length > 0 && (
        <>
          <h3>Steps added</h3>
          <ul>{steps.added.map((s) => <li key={s.id}><code>{s.id}</code> ({s.type})</li>)}</ul>
        </>
      )}
      {steps?.removed?.length > 0 && (
        <>
          <h3>Steps removed</h3>
          <ul>{steps.removed.map((s) => <li key={s.id}><code>{s.id}</code> ({s.type})</li>)}</ul>
        </>
      )}
      {steps?.changed?.length > 0 && (
        <>
          <h3>Steps changed</h3>
          {steps.changed.map((s) => (
            <div key={s.id}>
              <strong><code>{s.id}</code></strong> <span className="gov-muted">({s.type})</span>
              <ul>{s.changes.map((c) => <Change key={c.field} change={c} />)}</ul>
            </div>
          ))}
        </>
      )}
      {(edges?.added?.length > 0 || edges?.removed?.length > 0) && (
        <>
          <h3>Connections between steps</h3>
          <ul>
            {edges.added.map((e) => <li key={`+${e.from}-${e.to}`}>added {e.from} → {e.to}</li>)}
            {edges.removed.map((e) => <li key={`-${e.from}-${e.to}`}>removed {e.from} → {e.to}</li>)}
          </ul>
        </>
      )}
      {tests && (tests.added.length > 0 || tests.removed.length > 0 || tests.changed.length > 0) && (
        <>
          <h3>Sample tests</h3>
          <ul>
            {tests.added.map((n) => <li key={`a${n}`}>added {n}</li>)}
            {tests.removed.map((n) => <li key={`r${n}`}>removed {n}</li>)}
            {tests.changed.map((n) => <li key={`c${n}`}>changed {n}</li>)}
          </ul>
        </>
      )}
    </div>
  );
}

const CONTRACT_ROWS = [
  ['source_system_id', 'Source system'],
  ['destination_system_ids', 'Destination systems'],
  ['business_objects', 'Business objects'],
  ['direction', 'Direction'],
  ['trigger', 'Trigger'],
  ['frequency', 'Frequency'],
  ['volume_per_day', 'Volume per day'],
  ['peak_per_minute', 'Peak per minute'],
  ['sla.max_latency_seconds', 'Max latency (s)'],
  ['sla.business_hours', 'Business hours'],
  ['error_policy.max_attempts', 'Max attempts'],
  ['error_policy.max_age_seconds', 'Max age (s)'],
  ['error_policy.dead_letter_handling', 'Dead-letter handling'],
  ['business_owner_id', 'Business owner'],
  ['technical_owner_id', 'Technical owner'],
  ['on_call', 'On-call'],
];

const DAYS = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'];

function get(obj, path) {
  return path.split('.').reduce((node, key) => (node == null ? undefined : node[key]), obj);
}

export function ContractView({ contract, diff, problems, systems, users }) {
  if (!contract) {
    return <p className="notice notice-error">No integration contract yet: it is required to submit.</p>;
  }
  const sys = (id) => systems.find((s) => s.id === id)?.name ?? `system ${id}`;
  const usr = (id) => users.find((u) => u.id === id)?.email ?? `user ${id}`;
  const changed = new Set((diff?.changes || []).map((c) => c.field));
  const render = (path, value) => {
    if (value === undefined) return <span className="gov-muted">missing</span>;
    if (path === 'source_system_id') return sys(value);
    if (path === 'destination_system_ids') return value.map(sys).join(', ');
    if (path.endsWith('owner_id')) return usr(value);
    if (path === 'sla.business_hours') {
      return `${(value.days || []).map((d) => DAYS[d]).join(' ')} ${value.start}–${value.end} (${value.timezone})`;
    }
    if (path === 'on_call') return [value.name, value.email, value.webhook_url].filter(Boolean).join(' · ');
    return Array.isArray(value) ? value.join(', ') : String(value);
  };
  const isChanged = (path) => [...changed].some((c) => c === path || c.startsWith(`${path}.`));
  const addedFields = new Set((diff?.fields?.added || []).map((f) => `${f.destination_system_id}/${f.field}`));
  return (
    <div>
      {diff?.against_live && (
        <p className="gov-muted">
          {diff.changed ? 'Highlighted: changed against the live version’s contract.' : 'Same contract as the live version.'}
        </p>
      )}
      <dl className="gov-kv">
        {CONTRACT_ROWS.map(([path, label]) => (
          <Fragment key={path}>
            <dt>{label}</dt>
            <dd>
              <span className={diff?.against_live && isChanged(path) ? 'gov-changed' : undefined}>
                {render(path, get(contract, path))}
              </span>
            </dd>
          </Fragment>
        ))}
      </dl>
      <h3>Fields sent</h3>
      <table className="table">
        <thead><tr><th>Destination</th><th>Field</th><th>PII</th></tr></thead>
        <tbody>
          {(contract.fields || []).map((f) => (
            <tr key={`${f.destination_system_id}/${f.field}`}
              className={diff?.against_live && addedFields.has(`${f.destination_system_id}/${f.field}`) ? 'gov-changed' : undefined}>
              <td>{sys(f.destination_system_id)}</td>
              <td><code>{f.field}</code></td>
              <td>{f.pii ? 'PII' : ''}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {diff?.fields?.removed?.length > 0 && (
        <p>Removed: {diff.fields.removed.map((f) => `${f.field} → ${sys(f.destination_system_id)}`).join(', ')}</p>
      )}
      {diff?.changes?.length > 0 && (
        <details>
          <summary>Contract changes ({diff.changes.length})</summary>
          <ul>{diff.changes.map((c) => <Change key={c.field} change={c} />)}</ul>
        </details>
      )}
      {problems?.length > 0 && (
        <ul className="gov-problems" aria-label="Contract problems">
          {problems.map((p) => <li key={`${p.path}${p.message}`}>{p.message}</li>)}
        </ul>
      )}
    </div>
  );
}

export function Guardrails({ items }) {
  return (
    <ul className="gov-problems" style={{ listStyle: 'none', paddingLeft: 0 }} aria-label="Guardrails">
      {items.map((g, i) => (
        <li key={`${g.id}-${g.step}-${i}`} className={`gov-guard gov-guard-${g.status}`}>
          <span className="gov-pill">{g.status}</span>
          <span><code>{g.id}</code>{g.step ? ` (${g.step})` : ''}: {g.message}</span>
        </li>
      ))}
    </ul>
  );
}

// How each destination avoids duplicates when a delivery is retried (issue #6).
export function DestinationIdempotency({ items }) {
  if (!items || !items.length) return null;
  return (
    <table className="table" aria-label="Destination idempotency">
      <thead><tr><th>Deliver step</th><th>Connector</th><th>Idempotency</th><th>Attempts</th></tr></thead>
      <tbody>
        {items.map((d) => (
          <tr key={d.step}>
            <td><code>{d.step}</code></td>
            <td>{d.connector}</td>
            <td className={d.idempotency === 'none' ? 'gov-guard-warn' : 'gov-guard-pass'}>{d.label}</td>
            <td>{d.max_attempts}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function SampleTests({ items }) {
  if (!items.length) return <p className="gov-muted">No sample tests.</p>;
  return (
    <table className="table" aria-label="Sample tests">
      <thead><tr><th>Test</th><th>Step</th><th>Result</th><th>Expected / actual</th></tr></thead>
      <tbody>
        {items.map((t) => (
          <tr key={t.name}>
            <td>{t.name}</td>
            <td><code>{t.step}</code></td>
            <td className={t.status === 'pass' ? 'gov-guard-pass' : 'gov-guard-fail'}>{t.status}</td>
            <td>
              {t.status !== 'pass' && (
                <small>expected <code>{show(t.expected)}</code>, got <code>{t.error ? t.error.message : show(t.actual)}</code></small>
              )}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function DryRun({ runs }) {
  if (!runs.length) return <p className="gov-muted">No samples to dry-run.</p>;
  return (
    <div>
      {runs.map((r) => (
        <details key={r.sample}>
          <summary>
            Sample {r.sample + 1}: {r.status}{r.reason ? ` (${r.reason})` : ''}, {r.destinations.length} simulated
            delivery(ies)
          </summary>
          {r.destinations.map((d) => (
            <div key={d.step_id}>
              <strong>{d.step_id}</strong> would send:
              <pre className="gov-diff">{JSON.stringify(d.message, null, 2)}</pre>
            </div>
          ))}
        </details>
      ))}
    </div>
  );
}
